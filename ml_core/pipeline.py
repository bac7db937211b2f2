"""The one entry point the platform calls: ``run_training``.

Steps: encode and split -> logistic-regression baseline -> private MLP (and, for a private
run, a non-private twin on the same split and seed, so the cost of privacy is visible) ->
test metrics -> predictions with banded sensitive groups -> fairness audit of both models
-> save the artifact. Progress stages, in order: ``preparing``, ``baseline``, ``training``,
``training_twin`` (private runs only), ``auditing``, ``saving``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ml_core import fairness
from ml_core.artifacts import library_versions, save_model, schema_fingerprint
from ml_core.checkpoints import checkpoint_path
from ml_core.data import EncodedSplit, encode_and_split, feature_columns
from ml_core.metrics import (
    binary_metrics,
    choose_threshold,
    classification_charts,
    logistic_regression_baseline,
    positive_class_weight,
    reference_models,
)
from ml_core.person_privacy import PrivatePlan
from ml_core.privacy_statement import privacy_notes
from ml_core.progress import report_stage
from ml_core.spec import (
    ColumnMapping,
    PrivacyConfig,
    ProblemSpec,
    ProgressSink,
    StopCheck,
    TaskType,
    TrainConfig,
)
from ml_core.trainer import TrainedModel, TrainingCancelled, predict_scores, train_model

__all__ = ["TrainingCancelled", "TrainingResult", "run_tabular", "run_training"]



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



def _predictions(
    *, split: EncodedSplit, scores: np.ndarray, threshold: float, groups: pd.DataFrame
) -> pd.DataFrame:
    """One row per test row: original row id, truth, score, decision, banded groups."""
    table = pd.DataFrame({
        "row_id": split.ids_test,
        "y_true": split.y_test.astype(int),
        "y_score": scores.astype(float),
        "y_pred": (scores >= threshold).astype(int),
    })
    for column in groups.columns:
        # A sensitive column named like a fixed one must not overwrite it.
        name = column if column not in table.columns else f"sensitive_{column}"
        table[name] = groups[column].to_numpy()
    return table


def _audit(
    *, split: EncodedSplit, scores: np.ndarray, groups: pd.DataFrame, threshold: float,
    spec: ProblemSpec,
) -> dict:
    return fairness.audit(
        y_true=split.y_test, y_pred=(scores >= threshold).astype(int), sensitive=groups,
        policy=spec.fairness,
    )


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


def _private_plan(*, frame: pd.DataFrame, mapping: ColumnMapping, privacy: PrivacyConfig,
                  unit_column: str | None) -> PrivatePlan:
    return PrivatePlan.for_frame(frame=frame, columns=feature_columns(frame, mapping),
                                 privacy=privacy, unit_column=unit_column,
                                 column_types=dict(mapping.column_types),
                                 hierarchies=dict(mapping.hierarchies))


def run_training(
    *,
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    spec: ProblemSpec,
    privacy: PrivacyConfig | None = None,
    train: TrainConfig | None = None,
    artifact_dir: Path,
    progress: ProgressSink | None = None,
    should_stop: StopCheck | None = None,
    checkpoint_dir: Path | None = None,
) -> TrainingResult:
    """Train, evaluate, audit and save one model for ``spec`` on ``frame``, with the family
    ``spec.model_family`` names (:func:`ml_core.families.get_family`).

    ``privacy`` and ``train`` default to the spec's. Seeded by ``train.seed``: two runs
    with the same inputs give identical results on the same (CPU) device. The artifact is
    written into ``artifact_dir``. Prediction ``row_id`` values are ``frame``'s index
    (positions when that index has duplicates). Raises :class:`TrainingCancelled` (with the privacy
    spent so far) when ``should_stop()`` returns True.

    With ``checkpoint_dir`` every training stage writes a checkpoint there every epoch, and
    a call that finds one (an earlier attempt of the same run that died) resumes from it:
    the result equals an uninterrupted run's (:mod:`ml_core.checkpoints`). Every family's
    runner takes ``checkpoint_dir`` (the family resume tests check each one).
    """
    # Imported here: the family modules import this one (TrainingResult, json_ready).
    from ml_core.families import get_family

    return get_family(spec.model_family).run(
        frame=frame, mapping=mapping, spec=spec, privacy=privacy, train=train,
        artifact_dir=artifact_dir, progress=progress, should_stop=should_stop,
        checkpoint_dir=checkpoint_dir,
    )


def run_tabular(
    *,
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    spec: ProblemSpec,
    privacy: PrivacyConfig | None = None,
    train: TrainConfig | None = None,
    artifact_dir: Path,
    progress: ProgressSink | None = None,
    should_stop: StopCheck | None = None,
    checkpoint_dir: Path | None = None,
) -> TrainingResult:
    """The ``tabular_mlp`` family's run (:mod:`ml_core.families.tabular`): the contract of
    :func:`run_training` for binary classification with a private MLP."""
    if spec.task_type is not TaskType.BINARY_CLASSIFICATION:
        raise ValueError(f"the tabular_mlp family trains binary classification, "
                         f"not {spec.task_type.value}")
    frame, privacy, train = resolve_inputs(frame=frame, spec=spec, privacy=privacy, train=train)
    cpu = torch.device("cpu")

    report_stage(progress, "preparing", train.epochs)
    unit_column = spec.privacy_unit.column(mapping)
    plan = (_private_plan(frame=frame, mapping=mapping, privacy=privacy, unit_column=unit_column)
            if privacy.enabled else None)
    # A numeric target (a grade) becomes two classes by the problem's declared rule.
    split = encode_and_split(frame, mapping, train, target_rule=spec.target_rule,
                             person_column=unit_column,
                             private_noise=plan.noise if plan is not None else None)
    if train.reweigh_attribute:
        split = _reweighed(split=split, frame=frame, mapping=mapping, spec=spec,
                           attribute=train.reweigh_attribute)

    report_stage(progress, "baseline", train.epochs)
    baseline_val, baseline_scores = logistic_regression_baseline(
        x_train=split.x_train, y_train=split.y_train, x_eval=(split.x_val, split.x_test),
        seed=train.seed,
    )
    baseline_threshold = choose_threshold(split.y_val, baseline_val)
    baseline = {"name": "logistic_regression", "threshold": baseline_threshold,
                "metrics": binary_metrics(split.y_test, baseline_scores,
                                          threshold=baseline_threshold, metrics=spec.metrics)}

    try:
        main: TrainedModel = train_model(
            split=split, train=train,
            privacy=plan.sgd(split=split, train=train) if plan is not None else privacy,
            primary_metric=spec.primary_metric, stage="training", progress=progress,
            should_stop=should_stop, checkpoint_path=checkpoint_path(checkpoint_dir, "training"),
            # A private model is released as its last DP-SGD step left it (see train_model).
            select_on_validation=plan is None,
        )
    except TrainingCancelled as cancelled:
        # The preprocessing statistics were released to the training: their cost is spent.
        if plan is None:
            raise
        raise TrainingCancelled(privacy=plan.report(cancelled.privacy, spec=spec,
                                                    mapping=mapping)) from cancelled
    privacy_report = (plan.report(main.privacy, spec=spec, mapping=mapping)
                      if plan is not None else main.privacy)
    twin: TrainedModel | None = None
    if privacy.enabled:
        try:
            twin = train_model(
                split=split, train=train, privacy=None, primary_metric=spec.primary_metric,
                stage="training_twin", progress=progress, should_stop=should_stop,
                checkpoint_path=checkpoint_path(checkpoint_dir, "training_twin"),
            )
        except TrainingCancelled as cancelled:
            # The private model was already trained: its whole privacy cost was spent.
            raise TrainingCancelled(privacy=privacy_report) from cancelled

    report_stage(progress, "auditing", train.epochs)
    # Each model decides at its own threshold, chosen on the validation split (never test);
    # the released model's threshold under DP from a noisy histogram of those scores.
    val_scores = predict_scores(main.model, split.x_val, device=cpu)
    threshold = (plan.threshold(split=split, scores=val_scores, seed=train.seed)
                 if plan is not None else choose_threshold(split.y_val, val_scores))
    scores = predict_scores(main.model, split.x_test, device=cpu)
    # Banded over the whole table, as the dataset profile and mitigation band it (an
    # undeclared numeric attribute's quartile edges would otherwise differ between pages),
    # then the test rows by position (aligned with split.y_test).
    groups = fairness.sensitive_frame(frame, mapping, spec).loc[split.ids_test]
    groups = groups.reset_index(drop=True)
    predictions = _predictions(split=split, scores=scores, threshold=threshold, groups=groups)
    fairness_report = _audit(split=split, scores=scores, groups=groups, threshold=threshold,
                             spec=spec)
    twin_metrics = twin_fairness = None
    if twin is not None:
        twin_threshold = choose_threshold(
            split.y_val, predict_scores(twin.model, split.x_val, device=cpu))
        twin_scores = predict_scores(twin.model, split.x_test, device=cpu)
        twin_metrics = binary_metrics(split.y_test, twin_scores, threshold=twin_threshold,
                                      metrics=spec.metrics)
        twin_fairness = _audit(split=split, scores=twin_scores, groups=groups,
                               threshold=twin_threshold, spec=spec)

    report_stage(progress, "saving", train.epochs)
    versions = library_versions()
    used_columns = feature_columns(frame, mapping)
    saved = save_model(
        model=main.model,
        encoder=split.encoder,
        directory=Path(artifact_dir),
        metadata=json_ready({
            "spec_key": spec.key,
            "task_type": spec.task_type.value,
            "mapping": mapping.to_dict(),
            "feature_columns": list(used_columns),
            "schema_fingerprint": schema_fingerprint(frame, used_columns),
            "positive_label": split.positive_label,
            "target_rule": (None if spec.target_rule is None
                            else dataclasses.asdict(spec.target_rule)),
            "threshold": threshold,
            "seed": train.seed,
            "train_config": {
                "epochs": train.epochs, "batch_size": train.batch_size,
                "learning_rate": train.learning_rate, "hidden_sizes": list(train.hidden_sizes),
                "patience": train.patience, "test_fraction": train.test_fraction,
                "val_fraction": train.val_fraction, "class_weighting": train.class_weighting,
                "reweigh_attribute": train.reweigh_attribute,
            },
            "privacy": privacy_report,
            "epsilon": privacy_report.get("epsilon"),
            "delta": privacy_report.get("delta"),
            "split": split.summary(),
            "best_epoch": main.best_epoch,
            "device": main.device,
            "versions": versions,
        }),
    )

    return TrainingResult(
        metrics=binary_metrics(split.y_test, scores, threshold=threshold, metrics=spec.metrics),
        baseline=baseline,
        nonprivate_metrics=twin_metrics,
        privacy=privacy_report,
        fairness=fairness_report,
        nonprivate_fairness=twin_fairness,
        fairness_passed=fairness.passed(fairness_report),
        split=split.summary(),
        history=main.history,
        device=main.device,
        seed=train.seed,
        artifact_path=saved.path,
        artifact_sha256=saved.sha256,
        versions=versions,
        predictions=predictions,
        task_type=spec.task_type.value,
        charts=classification_charts(split.y_test, scores, threshold=threshold),
        notes=_notes(split=split, train=train, privacy=privacy_report),
        references=_references(split=split, spec=spec, seed=train.seed),
    )


def _reweighed(*, split: EncodedSplit, frame: pd.DataFrame, mapping: ColumnMapping,
               spec: ProblemSpec, attribute: str) -> EncodedSplit:
    """``split`` with Kamiran & Calders weights on its training rows for ``attribute``,
    its groups banded as the fairness audit bands them; computed on the training rows only."""
    # Imported here: ml_core.mitigation pulls in fairlearn, which unmitigated runs never need.
    from ml_core.mitigation import reweighing_weights

    if attribute not in mapping.sensitive:
        raise ValueError(f"reweighing needs a sensitive column; {attribute!r} is not one")
    groups = fairness.sensitive_frame(frame.loc[split.ids_train], mapping, spec)[attribute]
    weights = reweighing_weights(groups.reset_index(drop=True), split.y_train)
    return dataclasses.replace(split, w_train=weights)


def _references(*, split: EncodedSplit, spec: ProblemSpec, seed: int) -> dict:
    """Gradient-boosted trees on the same split (ml_core.metrics.reference_models)."""
    return reference_models(x_train=split.x_train, y_train=split.y_train, x_val=split.x_val,
                            y_val=split.y_val, x_test=split.x_test, y_test=split.y_test,
                            metrics=spec.metrics, seed=seed)


def _notes(*, split: EncodedSplit, train: TrainConfig, privacy: dict) -> list[str]:
    """Plain-language notes on how the model was trained and judged."""
    notes = [*privacy_notes(privacy)]
    notes += [f"Target: {split.target_rule}."] if split.target_rule else []
    notes += [f"Split: {split.method} train/validation/test ({len(split.y_train)}/"
             f"{len(split.y_val)}/{len(split.y_test)} rows); the decision threshold was "
             "chosen on the validation rows (best F1), never on the test rows."]
    if train.class_weighting:
        notes.append("Rare positives were weighted by negatives/positives of the training "
                     f"rows ({positive_class_weight(split.y_train):.1f}) in the loss.")
    if train.reweigh_attribute and split.w_train is not None:
        notes.append(
            f"Mitigation by reweighing on {train.reweigh_attribute}: each training row's loss "
            "was weighted by P(group) P(label) / P(group, label) of the training rows "
            f"(weights {float(split.w_train.min()):.2f} to {float(split.w_train.max()):.2f}). "
            "The weights come from the training rows' group and label counts without "
            "differential privacy (like the split sizes); under DP-SGD each weighted row's "
            "gradient is still clipped, so the stated epsilon holds for the model.")
    return notes
