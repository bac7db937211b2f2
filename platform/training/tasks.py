"""Celery tasks: thin, they take ids and call a service."""

import logging

from celery import shared_task, signals
from django.conf import settings

from observability.context import log_context
from observability.repeating import RepeatingThread
from training.recovery import RunRecovery
from training.services import execute_run

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True)
def train_run(self, run_id: int) -> None:
    # A second delivery of this message is a no-op while the run's attempt is alive;
    # after that attempt died, it takes the run over and resumes it (training.services).
    # Every log line of the run carries run_id.
    with log_context(run_id=run_id):
        logger.info("training run %s: task started", run_id)
        execute_run(run_id)
        logger.info("training run %s: task finished", run_id)


_recovery: list[RepeatingThread] = []


@signals.worker_ready.connect(weak=False)
def _start_recovery(sender=None, **_) -> None:
    """Every worker, at start and then every TESSERA_RECOVERY_INTERVAL_S, re-sends the runs
    whose message or attempt is gone (a thread: a solo-pool worker's main thread may be
    training for hours)."""
    thread = RepeatingThread(name="tessera-run-recovery",
                             interval_s=settings.TESSERA_RECOVERY_INTERVAL_S,
                             action=RunRecovery())
    _recovery.append(thread)
    thread.start()


@signals.worker_shutdown.connect(weak=False)
def _stop_recovery(**_) -> None:
    while _recovery:
        _recovery.pop().stop()
