"""Attempts and their leases: which worker holds a run, and how a dead one's run is taken over.

The attempt that claims a run holds a *lease* on it: a random token and an expiry
(``TESSERA_RUN_LEASE_S``) that a thread of the attempt renews while it trains
(:class:`RunLease`). A delivery that finds the run running under a live lease is a duplicate
and does nothing; one that finds the lease expired (the worker was killed, ran out of memory,
lost its machine) takes the run over with a new token and resumes it from its last
checkpoint (:func:`claim_run`). Every later write of an attempt (its end, its result) is
conditional on its token (:func:`finish_run`), so an attempt that lost its lease can change
nothing. A run whose attempts all died is failed (:func:`give_up`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from observability.audit_trail import log_action
from observability.repeating import RepeatingThread
from training import lifecycle
from training.lifecycle import PRE_TRAINING_STAGES
from training.models import TrainingRun

logger = logging.getLogger(__name__)


def lease_seconds() -> float:
    return float(settings.TESSERA_RUN_LEASE_S)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One attempt's hold on a run."""

    token: str
    attempt: int
    resumed: bool  # an earlier attempt died and this one took the run over
    earlier_stage: str = ""  # the stage the dead attempt had reached


def claim_run(run_id: int) -> Claim | None:
    """Take a queued run, or take over a running one whose lease expired; None when the run
    is missing, finished, or held by a live attempt (a duplicate delivery)."""
    now = timezone.now()
    token = uuid.uuid4().hex
    expires = now + timedelta(seconds=lease_seconds())
    if TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=now, stage="starting",
        attempt=F("attempt") + 1, lease_token=token, lease_expires_at=expires,
    ):
        attempt = TrainingRun.objects.filter(pk=run_id).values_list("attempt", flat=True)[0]
        return Claim(token=token, attempt=attempt, resumed=False)
    held = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).values(
        "lease_token", "lease_expires_at", "attempt", "stage").first()
    if held is None or (held["lease_expires_at"] is not None and held["lease_expires_at"] > now):
        return None
    if held["attempt"] >= settings.TESSERA_RUN_MAX_ATTEMPTS:
        give_up(run_id, held)
        return None
    # Compare-and-set on the dead attempt's token: of two deliveries racing to take over,
    # one wins.
    if not TrainingRun.objects.filter(
        pk=run_id, status=TrainingRun.Status.RUNNING, lease_token=held["lease_token"],
        lease_expires_at=held["lease_expires_at"],
    ).update(lease_token=token, lease_expires_at=expires, attempt=held["attempt"] + 1):
        return None
    return Claim(token=token, attempt=held["attempt"] + 1, resumed=True,
                 earlier_stage=held["stage"])


def give_up(run_id: int, held: dict) -> None:
    """Fail a run whose attempts all died (a run that kills its worker is not retried for
    ever); charged like any failure at the stage it had reached."""
    run = TrainingRun.objects.select_related("organisation").get(pk=run_id)
    claim = Claim(token=held["lease_token"], attempt=held["attempt"], resumed=True,
                  earlier_stage=held["stage"])
    message = (f"the worker training this run stopped {held['attempt']} times (killed, out of "
               f"memory or its machine lost) during stage {held['stage'] or 'starting'!r}; "
               "it is not retried again")
    if finish_run(run, claim, TrainingRun.Status.FAILED, action="run.failed", error=message,
               stage="failed"):
        logger.error("run %s: %s", run_id, message)


class RunLease:
    """Renews an attempt's lease from a thread while the attempt trains; ``lost`` is set
    when the run was taken over (this attempt was presumed dead) or left running."""

    def __init__(self, run_id: int, token: str) -> None:
        self.run_id, self.token = run_id, token
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = RepeatingThread(name=f"tessera-lease-run-{run_id}",
                                       interval_s=lease_seconds() / 4, action=self.renew)

    def renew(self) -> None:
        expires = timezone.now() + timedelta(seconds=lease_seconds())
        if TrainingRun.objects.filter(
            pk=self.run_id, status=TrainingRun.Status.RUNNING, lease_token=self.token
        ).update(lease_expires_at=expires) or self._done.is_set() or self.lost.is_set():
            return
        logger.warning("run %s: this attempt lost its lease (the run was taken over or "
                       "ended elsewhere); it stops", self.run_id)
        self.lost.set()

    def __enter__(self) -> RunLease:
        # Inside a transaction (a test's, or a caller's atomic block) the claim is not
        # committed: no other attempt can see the run, and another connection could not
        # renew what it cannot see.
        if not transaction.get_connection().in_atomic_block:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()  # the run may have ended: a failing renewal now means nothing
        self._thread.stop()


def finish_run(run: TrainingRun, claim: Claim, status: str, *, action: str, **fields) -> bool:
    """End the run if ``claim`` still holds it, and charge its privacy to the ledger."""
    # Whether private training had started decides what a failed run is charged: in this
    # attempt, or in a dead one this attempt took over (its steps were spent all the same).
    stage_before = TrainingRun.objects.filter(pk=run.pk).values_list("stage", flat=True).first()
    if (stage_before or "") in PRE_TRAINING_STAGES and claim.resumed:
        stage_before = claim.earlier_stage
    with transaction.atomic():
        done = TrainingRun.objects.filter(
            pk=run.pk, status=TrainingRun.Status.RUNNING, lease_token=claim.token
        ).update(status=status, finished_at=timezone.now(), lease_expires_at=None, **fields)
        if done:
            detail = {key: value for key, value in fields.items() if key in ("error", "privacy")}
            if status == TrainingRun.Status.CANCELLED:
                detail["stage"] = stage_before or ""  # where the cancel stopped it
            log_action(organisation=run.organisation, actor=None, action=action, obj=run,
                       detail=detail)
            lifecycle.ledger().charge_run(run.pk, stage_before=stage_before)
    return bool(done)
