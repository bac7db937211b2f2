"""Celery tasks: thin, they take ids and call a service."""

from celery import shared_task

from training.services import execute_run


@shared_task(bind=True, acks_late=True)
def train_run(self, run_id: int) -> None:
    # A second delivery of this message is a no-op: execute_run claims the run only
    # when it is still queued.
    execute_run(run_id)
