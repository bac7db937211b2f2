"""Start, run and cancel training runs. The Celery task only calls :func:`execute_run`.

A run's status is a state machine moved by compare-and-set updates
(``filter(status=...).update(...)``): a second delivery of the same message, or a worker
racing a cancel, finds the row no longer in the expected state and does nothing.

Crashes: the attempt that claims a run holds a lease on it (:mod:`training.leases`); a
delivery that finds the lease expired takes the run over and resumes it from its last
checkpoint. Runs whose message is gone are sent again by :mod:`training.recovery`.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.scoping import member_of
from ingestion.models import DatasetVersion
from ingestion.services import load_frame
from ml_core.spec import ColumnMapping, ProblemSpec, TrainConfig
from observability.audit_trail import log_action
from observability.outage import is_database_outage
from training import lifecycle
from training.budgets import check_work, plan_work
from training.leases import Claim, RunLease, claim_run, finish_run
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
            finished = finish_run(
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
            finished = finish_run(
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
        finished = finish_run(
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
