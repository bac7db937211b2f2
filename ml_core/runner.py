"""The one run skeleton every model family goes through.

:func:`run_family` owns what is the same for every family: the stages in order and their
progress reports (``preparing``, ``baseline``, an optional family stage such as the text
family's ``encoding``, ``training``, ``training_twin`` for private runs, ``auditing``,
``saving``), the cancel rule, the non-private twin trained on the same split and seed, the
fairness audits of both models, the metadata every artifact carries and the
:class:`TrainingResult`. A family fills in :class:`FamilyHooks` and exposes
``run = family_runner(its hooks)``; it never writes these steps again.

Cancellation: ``should_stop`` is polled by the training functions (before every step) and,
through :mod:`ml_core.cancellation` (installed here), by every long loop of the hooks
(encoding, baselines, audits) and at each stage boundary; the skeleton adds one rule, that
a cancel after the model's training (its twin, the audits) reports that model's whole
spend, since it was already trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from torch import nn

from ml_core import cancellation, group_metrics
from ml_core.artifacts import library_versions
from ml_core.checkpoints import checkpoint_path
from ml_core.progress import report_stage
from ml_core.spec import (
    ColumnMapping,
    PrivacyConfig,
    ProblemSpec,
    ProgressSink,
    StopCheck,
    TrainConfig,
)
from ml_core.trainer import TrainingCancelled

__all__ = [
    "Baseline", "Evaluation", "FamilyHooks", "FitCall", "Fitted", "RunInputs", "Saved",
    "TrainingResult", "family_runner", "json_ready", "resolve_inputs", "run_family",
    "with_groups",
]


@dataclass(frozen=True)
class TrainingResult:
    """JSON-serialisable outcome of one run (``predictions`` aside, which is a DataFrame)."""

    # private (or only) model on the held-out test split: roc_auc, pr_auc, accuracy, f1, brier, ks
    metrics: dict
    baseline: dict  # {"name": "logistic_regression", "metrics": {...}}
    # the non-private twin on the same split; None for a non-private run
    nonprivate_metrics: dict | None
    # enabled, epsilon, delta, noise_multiplier, sample_rate, steps, planned_steps, accountant,
    # target_epsilon, max_grad_norm, poisson_sampling
    privacy: dict
    fairness: dict  # attribute -> {by_group, disparities, checks, passed}
    nonprivate_fairness: dict | None
    fairness_passed: bool
    split: dict  # {"method": "stratified", "train": n, "val": n, "test": n, "seed": s}
    history: list[dict]  # per epoch: epoch, loss, val_metric, epsilon
    device: str
    seed: int
    artifact_path: str
    artifact_sha256: str
    versions: dict  # torch, opacus, sklearn, python
    # row_id, y_true, y_score, y_pred, then one banded column per sensitive attribute
    predictions: pd.DataFrame = field(repr=False, compare=False)
    task_type: str = "binary_classification"
    # Task-specific data the results page draws (forecast vs actual, top-k lists, PR curve...).
    charts: dict = field(default_factory=dict)
    # Plain-language notes for the report: split method, leakage warnings, model fixes.
    notes: list = field(default_factory=list)
    # Stronger non-private references beside the baseline (gradient-boosted trees), by name.
    references: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Everything but the predictions, JSON-ready (plain floats, NaN as None)."""
        return {
            item.name: json_ready(getattr(self, item.name))
            for item in fields(self)
            if item.name != "predictions"
        }


def json_ready(value: object) -> object:
    """Plain Python containers and scalars; NaN and infinities become None."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return [json_ready(item) for item in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def resolve_inputs(
    *, frame: pd.DataFrame, spec: ProblemSpec, privacy: PrivacyConfig | None,
    train: TrainConfig | None,
) -> tuple[pd.DataFrame, PrivacyConfig, TrainConfig]:
    """The spec's privacy and training defaults where none were given, and a frame whose
    index names one row each (row ids fall back to positions, the file's row order)."""
    if not frame.index.is_unique:
        frame = frame.reset_index(drop=True)
    return (frame, privacy if privacy is not None else spec.privacy,
            train if train is not None else spec.train)


def with_groups(table: pd.DataFrame, groups: pd.DataFrame, *, prefix: str = "sensitive_"
                ) -> pd.DataFrame:
    """``table`` with one column per banded sensitive attribute of ``groups`` (by position);
    a sensitive column named like one of the table's is added as ``<prefix><name>`` so
    it never overwrites it. Changes ``table`` in place and returns it."""
    for column in groups.columns:
        name = column if column not in table.columns else f"{prefix}{column}"
        table[name] = groups[column].to_numpy()
    return table


def class_predictions(*, row_ids: np.ndarray, y_true: np.ndarray | None,
                      probabilities: np.ndarray, classes: Sequence[str],
                      groups: pd.DataFrame | None = None, prefix: str = "sensitive_"
                      ) -> pd.DataFrame:
    """A multi-class model's predictions: ``row_id``, ``y_true`` (when known), ``y_pred``,
    ``y_score`` (the top probability), one ``prob_<class>`` column per class, then the
    group columns (:func:`with_groups`)."""
    chosen = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, dtype=int)
    table = pd.DataFrame({"row_id": row_ids})
    if y_true is not None:
        table["y_true"] = [classes[i] for i in y_true]
    table["y_pred"] = [classes[i] for i in chosen]
    table["y_score"] = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    for k, label in enumerate(classes):
        table[f"prob_{label}"] = probabilities[:, k] if len(probabilities) else np.zeros(0)
    return with_groups(table, groups, prefix=prefix) if groups is not None else table


# --- what the skeleton hands the hooks, and what they hand back ------------------------


@dataclass(frozen=True)
class RunInputs:
    """One run's inputs, the spec's defaults filled in (:func:`resolve_inputs`)."""

    frame: pd.DataFrame
    mapping: ColumnMapping
    spec: ProblemSpec
    privacy: PrivacyConfig
    train: TrainConfig


@dataclass(frozen=True)
class FitCall:
    """One training of the run: the model (``twin`` False) or its non-private twin."""

    privacy: PrivacyConfig | None  # None: train without differential privacy
    twin: bool
    stage: str  # "training" or "training_twin": the progress stage and checkpoint name
    progress: ProgressSink | None
    should_stop: StopCheck | None
    checkpoint_path: Path | None


@dataclass(frozen=True)
class Fitted:
    """A trained model as the skeleton reads it, whatever the family's trainer returned."""

    model: nn.Module  # unwrapped, eval mode, CPU
    privacy: dict  # privacy.disabled_report() for a non-private training
    history: list[dict]  # per epoch: epoch, loss, val_metric, epsilon
    best_epoch: int
    device: str
    trained: Any = None  # the family trainer's own result, for its notes and artifact

    @classmethod
    def of(cls, trained: Any, *, model: nn.Module, device: str | None = None) -> Fitted:
        """Read a trainer's result (anything with ``privacy``, ``history``, ``best_epoch``
        and, unless ``device`` is given, ``device``) whose best model is ``model``."""
        return cls(model=model, privacy=trained.privacy, history=trained.history,
                   best_epoch=trained.best_epoch,
                   device=device if device is not None else trained.device, trained=trained)


@dataclass(frozen=True)
class Baseline:
    """The ``baseline`` stage's outcome: the result's baseline entry and what the family's
    predictions and charts read from it. ``report`` None: the baseline is judged through
    the trained model and comes with its :class:`Evaluation` (next exercise)."""

    report: dict | None
    detail: Any = None


@dataclass(frozen=True)
class Evaluation:
    """One model on the test split: its metrics, its fairness audit, and what the family's
    predictions, charts, notes and artifact read (``detail``)."""

    metrics: dict
    fairness: dict
    detail: Any = None
    baseline: dict | None = None  # a baseline judged through this model (Baseline.report None)


@dataclass(frozen=True)
class Saved:
    path: str
    sha256: str


class FamilyHooks(Protocol):
    """What a family fills in; :func:`run_family` calls the hooks in stage order.

    ``prepare`` reads and splits the data (stage ``preparing``); ``baseline`` fits the
    naive reference (stage ``baseline``); ``setup`` runs under ``setup_stage`` when the
    family has one (the text encoder's ``encoding``); ``fit`` trains one model (called
    twice for a private run: the model, then the non-private twin on the same split and
    seed); ``evaluate`` scores a model on the test split and audits it (stage
    ``auditing``); ``save`` writes the artifact from the common metadata (stage
    ``saving``); ``split``, ``predictions``, ``charts``, ``notes`` and ``references`` fill
    the result.
    """

    setup_stage: str | None = None

    def prepare(self, inputs: RunInputs) -> Any: ...

    def baseline(self, inputs: RunInputs, prepared: Any) -> Baseline: ...

    def setup(self, inputs: RunInputs, prepared: Any) -> Any:
        """The prepared data with what training needs besides (the stage ``setup_stage``)."""
        return prepared

    def fit(self, inputs: RunInputs, prepared: Any, call: FitCall) -> Fitted: ...

    def evaluate(self, inputs: RunInputs, prepared: Any, fitted: Fitted) -> Evaluation: ...

    def split(self, inputs: RunInputs, prepared: Any) -> dict: ...

    def save(self, inputs: RunInputs, prepared: Any, model: Fitted, evaluation: Evaluation,
             *, directory: Path, metadata: dict) -> Saved: ...

    def predictions(self, inputs: RunInputs, prepared: Any, baseline: Baseline,
                    evaluation: Evaluation) -> pd.DataFrame: ...

    def charts(self, inputs: RunInputs, prepared: Any, baseline: Baseline, model: Fitted,
               evaluation: Evaluation) -> dict: ...

    def notes(self, inputs: RunInputs, prepared: Any, model: Fitted, twin: Fitted | None,
              evaluation: Evaluation) -> list[str]: ...

    def references(self, inputs: RunInputs, prepared: Any) -> dict:
        """Stronger non-private references beside the baseline, by name (none by default)."""
        return {}


def run_family(
    hooks: FamilyHooks, *, frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec,
    privacy: PrivacyConfig | None = None, train: TrainConfig | None = None,
    artifact_dir: Path, progress: ProgressSink | None = None,
    should_stop: StopCheck | None = None, checkpoint_dir: Path | None = None,
) -> TrainingResult:
    """Train, evaluate, audit and save one model of ``hooks``' family for ``spec``.

    The contract of :func:`ml_core.pipeline.run_training`: ``privacy`` and ``train``
    default to the spec's; seeded by ``train.seed``; the artifact is written into
    ``artifact_dir``; with ``checkpoint_dir`` each training stage checkpoints every epoch
    there and resumes from it. Raises :class:`TrainingCancelled` with the privacy spent.
    """
    with cancellation.stop_when(should_stop):
        return _stages(hooks, frame=frame, mapping=mapping, spec=spec, privacy=privacy,
                       train=train, artifact_dir=artifact_dir, progress=progress,
                       should_stop=should_stop, checkpoint_dir=checkpoint_dir)


def _stages(
    hooks: FamilyHooks, *, frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec,
    privacy: PrivacyConfig | None, train: TrainConfig | None, artifact_dir: Path,
    progress: ProgressSink | None, should_stop: StopCheck | None, checkpoint_dir: Path | None,
) -> TrainingResult:
    frame, privacy, train = resolve_inputs(frame=frame, spec=spec, privacy=privacy, train=train)
    inputs = RunInputs(frame=frame, mapping=mapping, spec=spec, privacy=privacy, train=train)

    report_stage(progress, "preparing", train.epochs)
    prepared = hooks.prepare(inputs)
    report_stage(progress, "baseline", train.epochs)
    baseline = hooks.baseline(inputs, prepared)
    if hooks.setup_stage is not None:
        report_stage(progress, hooks.setup_stage, train.epochs)
        prepared = hooks.setup(inputs, prepared)

    def fit(*, twin: bool) -> Fitted:
        stage = "training_twin" if twin else "training"
        return hooks.fit(inputs, prepared, FitCall(
            privacy=privacy if privacy.enabled and not twin else None, twin=twin, stage=stage,
            progress=progress, should_stop=should_stop,
            checkpoint_path=checkpoint_path(checkpoint_dir, stage)))

    main = fit(twin=False)
    cancellation.record_spent(main.privacy)
    twin = None
    if privacy.enabled:
        try:
            twin = fit(twin=True)
        except TrainingCancelled as cancelled:
            # The private model was already trained: its whole privacy cost was spent.
            raise TrainingCancelled(privacy=main.privacy) from cancelled

    report_stage(progress, "auditing", train.epochs)
    evaluation = hooks.evaluate(inputs, prepared, main)
    twin_evaluation = hooks.evaluate(inputs, prepared, twin) if twin is not None else None

    report_stage(progress, "saving", train.epochs)
    versions = library_versions()
    split = hooks.split(inputs, prepared)
    saved = hooks.save(inputs, prepared, main, evaluation, directory=Path(artifact_dir),
                       metadata={
                           "spec_key": spec.key, "task_type": spec.task_type.value,
                           "seed": train.seed, "mapping": mapping.to_dict(),
                           "privacy": main.privacy, "epsilon": main.privacy.get("epsilon"),
                           "delta": main.privacy.get("delta"), "best_epoch": main.best_epoch,
                           "versions": versions,
                       })
    return TrainingResult(
        metrics=evaluation.metrics,
        baseline=baseline.report if baseline.report is not None else evaluation.baseline,
        nonprivate_metrics=twin_evaluation.metrics if twin_evaluation is not None else None,
        privacy=main.privacy,
        fairness=evaluation.fairness,
        nonprivate_fairness=twin_evaluation.fairness if twin_evaluation is not None else None,
        fairness_passed=group_metrics.passed(evaluation.fairness),
        split=split,
        history=main.history,
        device=main.device,
        seed=train.seed,
        artifact_path=saved.path,
        artifact_sha256=saved.sha256,
        versions=versions,
        predictions=hooks.predictions(inputs, prepared, baseline, evaluation),
        task_type=spec.task_type.value,
        charts=hooks.charts(inputs, prepared, baseline, main, evaluation),
        notes=hooks.notes(inputs, prepared, main, twin, evaluation),
        references=hooks.references(inputs, prepared),
    )


def family_runner(hooks: FamilyHooks, *, doc: str) -> Callable[..., TrainingResult]:
    """A family's ``run(*, frame, mapping, spec, privacy, train, artifact_dir, progress,
    should_stop, checkpoint_dir)``: :func:`run_family` over ``hooks``, documented by ``doc``."""

    def run(
        *, frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec,
        privacy: PrivacyConfig | None = None, train: TrainConfig | None = None,
        artifact_dir: Path, progress: ProgressSink | None = None,
        should_stop: StopCheck | None = None, checkpoint_dir: Path | None = None,
    ) -> TrainingResult:
        return run_family(hooks, frame=frame, mapping=mapping, spec=spec, privacy=privacy,
                          train=train, artifact_dir=artifact_dir, progress=progress,
                          should_stop=should_stop, checkpoint_dir=checkpoint_dir)

    run.__doc__ = doc
    return run
