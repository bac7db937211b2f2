"""Celery tasks: thin, they take ids and call a service."""

from celery import shared_task


@shared_task(acks_late=True)
def score_batch(job_id: int) -> None:
    from governance.scoring import execute_scoring_job

    execute_scoring_job(job_id)


@shared_task(acks_late=True)
def scheduled_retrain(schedule_id: int) -> None:
    from governance.schedules import retrain

    retrain(schedule_id)


@shared_task(acks_late=True)
def check_drift(dataset_version_id: int) -> None:
    from governance.drift import check_dataset_version

    check_dataset_version(dataset_version_id)


@shared_task(acks_late=True)
def audit_privacy(privacy_audit_id: int) -> None:
    from governance.privacy_audit import run_audit

    run_audit(privacy_audit_id)
