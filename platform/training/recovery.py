"""Recovery of runs whose message or attempt is gone.

:class:`RunRecovery`, run by every worker every ``TESSERA_RECOVERY_INTERVAL_S``, re-sends
the runs whose message is gone: running runs whose lease expired (:mod:`training.leases`),
and queued runs the broker lost (a Redis restart without persistence, kombu's filesystem
transport, which deletes a message when a worker takes it). The database, not the broker,
is the source of truth for what still has to run.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from training.leases import give_up
from training.models import TrainingRun

logger = logging.getLogger(__name__)


def training_queue_size() -> int | None:
    """Messages waiting in the training queue; None when the broker does not answer."""
    from training.tasks import train_run

    try:
        with train_run.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            return int(conn.default_channel.queue_declare(
                queue="training", passive=True).message_count)
    except Exception as exc:  # noqa: BLE001 - kombu's errors vary by transport
        if "not_found" in str(exc).lower() or "no queue" in str(exc).lower():
            return 0  # never declared, or emptied by a broker restart
        logger.warning("recovery: the broker did not say how many runs wait: %s", exc)
        return None


def _redispatch(run: TrainingRun, now) -> bool:
    """Send ``run``'s message again, unless another worker's recovery just did."""
    task_id = run.task_id or str(uuid.uuid4())
    if not TrainingRun.objects.filter(
        pk=run.pk, status=run.status, dispatched_at=run.dispatched_at
    ).update(dispatched_at=now, task_id=task_id):
        return False
    from training.tasks import train_run

    train_run.apply_async(args=[run.pk], queue="training", task_id=task_id)
    return True


class RunRecovery:
    """Re-sends the messages of runs that would otherwise never end. Every worker calls one
    every ``TESSERA_RECOVERY_INTERVAL_S`` (``training.tasks``); each call returns the ids
    of the runs it sent again.

    * Running runs whose lease expired: their attempt died (a killed worker's message is
      gone from kombu's filesystem transport, and Redis only gives it back after its
      visibility timeout). The new delivery takes the run over and resumes it.
    * Queued runs, when the training queue holds fewer messages than there are queued runs
      (the broker lost some: a Redis restart without persistence), on two calls in a row:
      a message a worker took a moment ago has left the queue before its run is claimed.
      Which messages are missing is unknown, so all those runs are sent again: a duplicate
      is a no-op.

    Runs sent within ``TESSERA_REQUEUE_AFTER_S`` are left alone (their message may still be
    on its way). Runs never sent (``manage.py pipeline --inline``) are not queued here.
    """

    def __init__(self) -> None:
        self._short: set[int] = set()  # queued runs the queue was short of at the last call

    def __call__(self) -> list[int]:
        now = timezone.now()
        settled = Q(dispatched_at__isnull=True) | Q(
            dispatched_at__lt=now - timedelta(seconds=float(settings.TESSERA_REQUEUE_AFTER_S)))
        resent = [run.pk for run in TrainingRun.objects.filter(
            settled, Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now),
            status=TrainingRun.Status.RUNNING) if self._take_over(run, now)]
        waiting = list(TrainingRun.objects.filter(
            settled, status=TrainingRun.Status.QUEUED, dispatched_at__isnull=False))
        short: set[int] = set()
        if waiting:
            size = training_queue_size()
            if size is not None and size < len(waiting):
                short = {run.pk for run in waiting}
                lost = [run.pk for run in waiting
                        if run.pk in self._short and _redispatch(run, now)]
                if lost:
                    logger.warning("recovery: %d queued runs but %d messages in the training "
                                   "queue: sent runs %s again", len(waiting), size, lost)
                resent.extend(lost)
        self._short = short
        return resent

    @staticmethod
    def _take_over(run: TrainingRun, now) -> bool:
        if run.attempt >= settings.TESSERA_RUN_MAX_ATTEMPTS:
            give_up(run.pk, {"lease_token": run.lease_token, "attempt": run.attempt,
                              "stage": run.stage})
            return False
        if not _redispatch(run, now):
            return False
        logger.warning("recovery: run %s: its attempt %d stopped renewing its lease (expired "
                       "%s); sent again to be taken over", run.pk, run.attempt,
                       run.lease_expires_at)
        return True
