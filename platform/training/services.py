"""Start, run and cancel training runs. The Celery task only calls :func:`execute_run`.

A run's status is a state machine moved by compare-and-set updates
(``filter(status=...).update(...)``): a second delivery of the same message, or a worker
racing a cancel, finds the row no longer in the expected state and does nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts.scoping import membership_for
from audits.models import FairnessReport
from audits.services import log_action
from governance.ledger import charge_run, check_run_allowed
from governance.registry import on_model_created, registry_fields
from ingestion.models import DatasetVersion
from ingestion.services import load_frame
from ml_core.spec import ColumnMapping, PrivacyConfig, ProblemSpec, TrainConfig
from training.models import ModelVersion, TrainingRun
from training.progress import CancelCheck, RunProgress
from training.results import json_safe
from verticals.registry import get_problem

logger = logging.getLogger(__name__)

# TrainConfig fields a run may override (run.config); "device" stays the worker's choice.
OVERRIDABLE = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "device")


def train_config(spec: ProblemSpec, overrides: dict | None) -> TrainConfig:
    """The problem's TrainConfig with the run's overrides, validated; JSON lists -> tuples."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"unknown training options {unknown}; allowed: {list(OVERRIDABLE)}")
    if "hidden_sizes" in overrides:
        overrides["hidden_sizes"] = tuple(int(n) for n in overrides["hidden_sizes"])
    for name in ("epochs", "batch_size", "patience", "seed"):
        if name in overrides:
            overrides[name] = int(overrides[name])
    for name in ("learning_rate", "test_fraction", "val_fraction"):
        if name in overrides:
            overrides[name] = float(overrides[name])
    return dataclasses.replace(spec.train, **overrides)


def privacy_config(spec: ProblemSpec, requested: dict) -> PrivacyConfig:
    """The problem's PrivacyConfig with what the run asked for."""
    changes: dict = {"enabled": bool(requested.get("enabled", True))}
    if requested.get("target_epsilon") is not None:
        changes["target_epsilon"] = float(requested["target_epsilon"])
    if requested.get("delta") is not None:
        changes["delta"] = float(requested["delta"])
    return dataclasses.replace(spec.privacy, **changes)


def start_run(
    *,
    version: DatasetVersion,
    user,
    privacy_enabled: bool = True,
    target_epsilon: float | None = None,
    delta: float | None = None,
    config: dict | None = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Create a queued run and, once the transaction commits, send it to the training queue.

    ValueError when the version is not trainable or an option is invalid; PermissionDenied
    for another organisation's data. ``enqueue=False`` leaves the run queued for the caller
    to execute in-process (``manage.py pipeline --inline``).
    """
    membership = membership_for(user)
    dataset = version.dataset
    if dataset.organisation_id != membership.organisation_id:
        raise PermissionDenied("this dataset belongs to another organisation")
    if not version.trainable:
        raise ValueError(
            f"dataset version {version.number} is {version.get_status_display().lower()}, "
            "not validated: it cannot be trained"
        )
    spec = get_problem(dataset.vertical, dataset.problem).spec
    config = dict(config or {})
    config.setdefault("seed", 0)
    train_config(spec, config)  # refuse bad options now, not in the worker
    if target_epsilon is not None and not float(target_epsilon) > 0:
        raise ValueError("target epsilon must be positive")
    if delta is not None and not 0 < float(delta) < 1:
        raise ValueError("delta must be between 0 and 1")
    privacy_requested = {
        "enabled": bool(privacy_enabled),
        "target_epsilon": float(
            target_epsilon if target_epsilon is not None else spec.privacy.target_epsilon
        ),
        "delta": float(delta) if delta is not None else None,
    }
    task_id = str(uuid.uuid4()) if enqueue else ""
    with transaction.atomic():
        # Budget and personal-data rules (governance): refused before the run exists.
        check_run_allowed(
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
    from training.tasks import train_run

    train_run.apply_async(args=[run_id], queue="training", task_id=task_id)


def cancel_run(*, run: TrainingRun, user) -> TrainingRun:
    """Cancel a queued run at once; ask a running one to stop at its next check.

    ValueError when the run has already finished.
    """
    membership = membership_for(user)
    if run.organisation_id != membership.organisation_id:
        raise PermissionDenied("this run belongs to another organisation")
    now = timezone.now()
    with transaction.atomic():
        if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.CANCELLED,
            cancel_requested=True,
            finished_at=now,
            stage="cancelled",
        ):
            action = "run.cancelled"
        elif TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            cancel_requested=True
        ):
            action = "run.cancel_requested"
        else:
            run.refresh_from_db()
            raise ValueError(f"run {run.pk} has already {run.get_status_display().lower()}")
        log_action(organisation=membership.organisation, actor=user, action=action, obj=run)
    run.refresh_from_db()
    return run


def _worker_device(train: TrainConfig) -> str:
    if train.device != "auto":
        return train.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def execute_run(run_id: int) -> None:
    """Train one run; what the Celery task calls. A run not queued any more is left alone."""
    from ml_core.pipeline import TrainingCancelled, run_training

    started = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=started, stage="starting"
    )
    if not claimed:
        logger.info("run %s is not queued (missing, started or cancelled): nothing to do", run_id)
        return
    run = TrainingRun.objects.select_related("dataset_version__dataset", "organisation").get(
        pk=run_id
    )
    try:
        spec = get_problem(run.vertical, run.problem).spec
        train = train_config(spec, run.config)
        privacy = privacy_config(spec, run.privacy_requested)
        TrainingRun.objects.filter(pk=run_id).update(device=_worker_device(train))
        frame = load_frame(run.dataset_version)
        mapping = ColumnMapping.from_dict(run.dataset_version.mapping)
        artifact_dir = Path(settings.TESSERA_ARTIFACT_DIR) / f"run_{run.pk}"
        artifact_dir.mkdir(parents=True, exist_ok=True)
        result = run_training(
            frame=frame,
            mapping=mapping,
            spec=spec,
            privacy=privacy,
            train=train,
            artifact_dir=artifact_dir,
            progress=RunProgress(run_id),
            should_stop=CancelCheck(run_id),
        )
    except TrainingCancelled as exc:
        privacy_spent = json_safe(exc.privacy or {})
        _finish(
            run,
            TrainingRun.Status.CANCELLED,
            action="run.cancelled",
            privacy=privacy_spent,
            epsilon_spent=privacy_spent.get("epsilon"),
            stage="cancelled",
        )
        return
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        message = f"{type(exc).__name__}: {exc}"
        _finish(
            run,
            TrainingRun.Status.FAILED,
            action="run.failed",
            error=message[:4000],
            stage="failed",
        )
        return
    _record_success(run, result=result, spec=spec, artifact_dir=artifact_dir)


def _finish(run: TrainingRun, status: str, *, action: str, **fields) -> bool:
    # Whether private training had started decides what a failed run is charged.
    stage_before = TrainingRun.objects.filter(pk=run.pk).values_list("stage", flat=True).first()
    with transaction.atomic():
        done = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            status=status, finished_at=timezone.now(), **fields
        )
        if done:
            log_action(
                organisation=run.organisation,
                actor=None,
                action=action,
                obj=run,
                detail={key: value for key, value in fields.items() if key in ("error", "privacy")},
            )
            charge_run(run.pk, stage_before=stage_before)
    return bool(done)


def _record_success(run: TrainingRun, *, result, spec: ProblemSpec, artifact_dir: Path) -> None:
    predictions_path = artifact_dir / "predictions.csv"
    if result.predictions is not None and not predictions_path.exists():
        result.predictions.to_csv(predictions_path, index=False)
    summary = json_safe(result.to_dict())
    privacy = summary.get("privacy") or {}
    rest = {
        k: v for k, v in summary.items() if k not in ("metrics", "privacy", "fairness", "history")
    }
    with transaction.atomic():
        finished = _finish(
            run,
            TrainingRun.Status.SUCCEEDED,
            action="run.succeeded",
            metrics=summary.get("metrics") or {},
            privacy=privacy,
            fairness=summary.get("fairness") or {},
            result=rest,
            history=summary.get("history") or [],
            device=str(result.device)[:32],
            artifact_path=str(artifact_dir),
            stage="done",
            epsilon_spent=privacy.get("epsilon"),
        )
        if not finished:  # cancelled or failed meanwhile: no model from it
            return
        model_version = ModelVersion.objects.create(
            organisation=run.organisation,
            run=run,
            vertical=run.vertical,
            problem=run.problem,
            artifact_sha256=result.artifact_sha256,
            **registry_fields(run, seed=result.seed),
        )
        FairnessReport.objects.create(
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
        on_model_created(model_version)
