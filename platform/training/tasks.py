"""Celery tasks: thin, they take ids and call a service."""

import logging

from celery import shared_task

from observability.context import log_context
from training.services import execute_run

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True)
def train_run(self, run_id: int) -> None:
    # A second delivery of this message is a no-op: execute_run claims the run only
    # when it is still queued. Every log line of the run carries run_id.
    with log_context(run_id=run_id):
        logger.info("training run %s: task started", run_id)
        execute_run(run_id)
        logger.info("training run %s: task finished", run_id)
