"""Start, run and cancel training runs. The Celery task only calls :func:`execute_run`.

A run's status is a state machine moved by compare-and-set updates
(``filter(status=...).update(...)``): a second delivery of the same message, or a worker
racing a cancel, finds the row no longer in the expected state and does nothing.

Crashes. The attempt that claims a run holds a *lease* on it: a random token and an expiry
(``TESSERA_RUN_LEASE_S``) that a thread of the attempt renews while it trains. A delivery
that finds the run running under a live lease is a duplicate and does nothing; one that
finds the lease expired (the worker was killed, ran out of memory, lost its machine) takes
the run over with a new token and resumes it from its last checkpoint. Every later write of
an attempt (its end, its result) is conditional on its token, so an attempt that lost its
lease can change nothing. :class:`RunRecovery`, run by every worker every
``TESSERA_RECOVERY_INTERVAL_S``, re-sends the runs whose message is gone: running runs
whose lease expired, and queued runs the broker lost (a Redis restart without persistence,
kombu's filesystem transport, which deletes a message when a worker takes it). The
database, not the broker, is the source of truth for what still has to run.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.scoping import member_of
from ingestion.models import DatasetVersion
from ingestion.services import load_frame
from ml_core.spec import ColumnMapping, ProblemSpec, TrainConfig
from observability.audit_trail import log_action
from observability.outage import is_database_outage
from observability.repeating import RepeatingThread
from training import lifecycle
from training.budgets import check_work, plan_work
from training.lifecycle import PRE_TRAINING_STAGES
from training.models import ModelVersion, TrainingRun
from training.options import (
    clean_privacy_options,
    clean_training_options,
    privacy_config,
    train_config,
)
from training.pictures import store_pictures
from training.predictions import predictions_path, save_predictions
from training.progress import CancelCheck, RunProgress, model_headline, request_cancel
from training.provenance import provenance_fields
from training.results import json_safe
from verticals.registry import get_problem

logger = logging.getLogger(__name__)
# Result keys that hold server file paths: stored apart, never shown.
SERVER_PATH_KEYS = ("artifact_path", "checkpoint_dir")


def start_run(
    *,
    version: DatasetVersion,
    user,
    privacy_enabled: bool = True,
    target_epsilon: float | None = None,
    delta: float | None = None,
    max_grad_norm: float | None = None,
    config: dict | None = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Create a queued run and, once the transaction commits, send it to the training queue.

    ValueError when the version is not trainable, an option is out of its range
    (``training.options.InvalidRunOptions``) or the run is over a work budget
    (``training.budgets.WorkBudgetExceeded``); PermissionDenied for another organisation's
    data. ``enqueue=False`` leaves the run queued for the caller
    to execute in-process (``manage.py pipeline --inline``).
    """
    dataset = version.dataset
    membership = member_of(user, dataset)
    if not version.trainable:
        raise ValueError(
            f"dataset version {version.number} is {version.get_status_display().lower()}, "
            "not validated: it cannot be trained"
        )
    spec = get_problem(dataset.vertical, dataset.problem).spec
    # One validation for the web, the API and the command (training.options): refused now,
    # with each option's range, not in the worker; stored as parsed ("false" is False).
    config = clean_training_options({"seed": 0, **(config or {})})
    train = train_config(spec, config)
    requested = clean_privacy_options({
        "enabled": privacy_enabled, "target_epsilon": target_epsilon, "delta": delta,
        "max_grad_norm": max_grad_norm})
    privacy_requested = {
        "enabled": requested["enabled"],
        "target_epsilon": float(requested.get("target_epsilon", spec.privacy.target_epsilon)),
        "delta": requested.get("delta"),
    }
    if "max_grad_norm" in requested:
        privacy_requested["max_grad_norm"] = requested["max_grad_norm"]
    # The work budgets of this deployment (training.budgets), from the version's profile.
    check_work(plan_work(rows=int((version.profile or {}).get("rows") or 0),
                         columns=len(version.columns or ()), train=train,
                         private=privacy_requested["enabled"]))
    task_id = str(uuid.uuid4()) if enqueue else ""
    with transaction.atomic():
        # Budget and personal-data rules (governance): refused before the run exists.
        lifecycle.ledger().check_run_allowed(
            dataset=dataset, membership=membership, privacy_requested=privacy_requested
        )
        run = TrainingRun.objects.create(
            organisation=membership.organisation,
            dataset_version=version,
            vertical=dataset.vertical,
            problem=dataset.problem,
            config=config,
            privacy_requested=privacy_requested,
            task_id=task_id,
            created_by=user,
        )
        log_action(
            organisation=membership.organisation,
            actor=user,
            action="run.started",
            obj=run,
            detail={"dataset_version": version.pk, "privacy": privacy_requested, "config": config},
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue(run.pk, task_id))
    return run


def _enqueue(run_id: int, task_id: str) -> None:
    """Send the run's message. A broker that is down does not lose the run: it stays queued
    in the database and :class:`RunRecovery` sends it again later."""
    from training.tasks import train_run

    TrainingRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
    try:
        train_run.apply_async(args=[run_id], queue="training", task_id=task_id)
    except Exception:  # noqa: BLE001 - kombu's connection errors vary by transport
        logger.warning("run %s: the broker did not take its message; it stays queued and "
                       "will be sent again", run_id, exc_info=True)


def cancel_run(*, run: TrainingRun, user) -> TrainingRun:
    """Cancel a queued run at once; ask a running one to stop at its next check.

    ValueError when the run has already finished.
    """
    membership = member_of(user, run, refusal="this run belongs to another organisation")
    request_cancel(run, organisation=membership.organisation, user=user, action="run",
                   what=f"run {run.pk}", stage="cancelled")
    return run


def _worker_device(train: TrainConfig) -> str:
    if train.device != "auto":
        return train.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- Attempts and leases -------------------------------------------------------------

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
        _give_up(run_id, held)
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


def _give_up(run_id: int, held: dict) -> None:
    """Fail a run whose attempts all died (a run that kills its worker is not retried for
    ever); charged like any failure at the stage it had reached."""
    run = TrainingRun.objects.select_related("organisation").get(pk=run_id)
    claim = Claim(token=held["lease_token"], attempt=held["attempt"], resumed=True,
                  earlier_stage=held["stage"])
    message = (f"the worker training this run stopped {held['attempt']} times (killed, out of "
               f"memory or its machine lost) during stage {held['stage'] or 'starting'!r}; "
               "it is not retried again")
    if _finish(run, claim, TrainingRun.Status.FAILED, action="run.failed", error=message,
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


def checkpoint_dir(run_id: int) -> Path:
    """Where a run's epochs are checkpointed: beside the artifacts, which every worker
    shares, so another worker can resume the run."""
    return Path(settings.TESSERA_ARTIFACT_DIR) / "checkpoints" / f"run_{run_id}"


def execute_run(run_id: int) -> None:
    """Train one run; what the Celery task calls. A run not queued any more is left alone,
    unless its attempt died: then this call takes it over and resumes it."""
    from ml_core.checkpoints import checkpoint_epochs
    from ml_core.pipeline import TrainingCancelled, run_training
    from ml_core.privacy import CalibrationCancelled, stop_calibration_when

    claim = claim_run(run_id)
    if claim is None:
        logger.info("run %s is not queued nor abandoned (missing, finished, or held by a "
                    "live attempt): nothing to do", run_id)
        return
    run = TrainingRun.objects.select_related("dataset_version__dataset", "organisation").get(
        pk=run_id
    )
    checkpoints = checkpoint_dir(run.pk)
    if claim.resumed:
        epochs = checkpoint_epochs(checkpoints)
        logger.warning("run %s: attempt %d takes over from a dead attempt (stage %r); "
                       "checkpoints %s", run_id, claim.attempt, claim.earlier_stage, epochs)
        log_action(organisation=run.organisation, actor=None, action="run.resumed", obj=run,
                   detail={"attempt": claim.attempt, "earlier_stage": claim.earlier_stage,
                           "checkpoint_epochs": epochs})
    with RunLease(run_id, claim.token) as lease:
        cancel_check = CancelCheck(run_id)

        def should_stop() -> bool:
            return lease.lost.is_set() or cancel_check()

        progress = RunProgress(run_id, should_stop=should_stop)
        if claim.resumed:
            progress.history = list(run.history)  # the epochs before the resume stay on the page
        try:
            spec = get_problem(run.vertical, run.problem).spec
            train = train_config(spec, run.config)
            privacy = privacy_config(spec, run.privacy_requested)
            TrainingRun.objects.filter(pk=run_id).update(device=_worker_device(train))
            frame = load_frame(run.dataset_version)
            mapping = ColumnMapping.from_dict(run.dataset_version.mapping)
            artifact_dir = Path(settings.TESSERA_ARTIFACT_DIR) / f"run_{run.pk}"
            artifact_dir.mkdir(parents=True, exist_ok=True)
            # The noise search checks the same cancel (ml_core.privacy): a long schedule's
            # calibration is the first thing a cancel must be able to stop.
            with stop_calibration_when(should_stop):
                result = run_training(
                    frame=frame,
                    mapping=mapping,
                    spec=spec,
                    privacy=privacy,
                    train=train,
                    artifact_dir=artifact_dir,
                    progress=progress,
                    should_stop=should_stop,
                    checkpoint_dir=checkpoints,
                )
        except (TrainingCancelled, CalibrationCancelled) as exc:
            if lease.lost.is_set():
                return  # another attempt owns the run now
            privacy_spent = json_safe(exc.privacy or {})
            finished = _finish(
                run,
                claim,
                TrainingRun.Status.CANCELLED,
                action="run.cancelled",
                privacy=privacy_spent,
                epsilon_spent=privacy_spent.get("epsilon"),
                stage="cancelled",
            )
        except Exception as exc:
            if lease.lost.is_set():
                return
            if is_database_outage(exc):
                # Not the run's fault: leave it running; once its lease has expired the
                # recovery sends it again and it resumes from its last checkpoint.
                logger.warning("run %s: the database became unreachable (%s); the run will "
                               "resume from its checkpoint", run_id, type(exc).__name__)
                return
            logger.exception("run %s failed", run_id)
            message = f"{type(exc).__name__}: {exc}"
            finished = _finish(
                run,
                claim,
                TrainingRun.Status.FAILED,
                action="run.failed",
                error=message[:4000],
                stage="failed",
            )
        else:
            finished = _record_success(run, claim, result=result, spec=spec,
                                       artifact_dir=artifact_dir)
    if finished:
        shutil.rmtree(checkpoints, ignore_errors=True)


def _finish(run: TrainingRun, claim: Claim, status: str, *, action: str, **fields) -> bool:
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


# --- Recovery of runs whose message or attempt is gone -------------------------------

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
            _give_up(run.pk, {"lease_token": run.lease_token, "attempt": run.attempt,
                              "stage": run.stage})
            return False
        if not _redispatch(run, now):
            return False
        logger.warning("recovery: run %s: its attempt %d stopped renewing its lease (expired "
                       "%s); sent again to be taken over", run.pk, run.attempt,
                       run.lease_expires_at)
        return True


def _record_success(run: TrainingRun, claim: Claim, *, result, spec: ProblemSpec,
                    artifact_dir: Path) -> bool:
    if result.predictions is not None and not predictions_path(artifact_dir).exists():
        save_predictions(result.predictions, artifact_dir)  # encrypted: personal data
    summary = json_safe(result.to_dict())
    if summary.get("charts"):  # pictures show data: files, encrypted, never in the database
        summary["charts"] = store_pictures(summary["charts"], artifact_dir)
    privacy = summary.get("privacy") or {}
    # The artifact's folder is kept in its own column, never in the result that pages and
    # the API show (a server path tells an attacker the layout).
    rest = {
        k: v for k, v in summary.items()
        if k not in ("metrics", "privacy", "fairness", "history", *SERVER_PATH_KEYS)
    }
    with transaction.atomic():
        finished = _finish(
            run,
            claim,
            TrainingRun.Status.SUCCEEDED,
            action="run.succeeded",
            metrics=summary.get("metrics") or {},
            privacy=privacy,
            fairness=summary.get("fairness") or {},
            result=rest,
            history=summary.get("history") or [],
            # The headline is the model's last epoch, never the twin's (trained after it).
            **model_headline(summary.get("history") or []),
            device=str(result.device)[:32],
            artifact_path=str(artifact_dir),
            stage="done",
            epsilon_spent=privacy.get("epsilon"),
        )
        if not finished:  # cancelled, failed or taken over meanwhile: no model from it
            return False
        model_version = ModelVersion.objects.create(
            organisation=run.organisation,
            run=run,
            vertical=run.vertical,
            problem=run.problem,
            artifact_sha256=result.artifact_sha256,
            **provenance_fields(run, seed=result.seed),
        )
        hooks = lifecycle.model_hooks()
        hooks.record_fairness(
            run=run,
            passed=bool(result.fairness_passed),
            report=summary.get("fairness") or {},
            nonprivate_report=summary.get("nonprivate_fairness") or {},
            policy=json_safe(dataclasses.asdict(spec.fairness)),
        )
        log_action(
            organisation=run.organisation,
            actor=None,
            action="model.created",
            obj=model_version,
            detail={"run": run.pk, "fairness_passed": bool(result.fairness_passed)},
        )
        hooks.on_model_created(model_version)
    return True
