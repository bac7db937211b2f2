"""The one entry point the platform calls: ``run_training``.

Steps: encode and split -> logistic-regression baseline -> private MLP (and, for a private
run, a non-private twin on the same split and seed, so the cost of privacy is visible) ->
test metrics -> predictions with banded sensitive groups -> fairness audit of both models
-> save the artifact. Progress stages, in order: ``preparing``, ``baseline``, ``training``,
``training_twin`` (private runs only), ``auditing``, ``saving``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ml_core import fairness
from ml_core.artifacts import save_model, schema_fingerprint
from ml_core.data import EncodedSplit, encode_and_split, feature_columns, without_whitening
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
from ml_core.runner import (
    Baseline,
    Evaluation,
    FamilyHooks,
    FitCall,
    Fitted,
    RunInputs,
    Saved,
    TrainingResult,
    family_runner,
    json_ready,
    resolve_inputs,
    with_groups,
)
from ml_core.spec import (
    ColumnMapping,
    PrivacyConfig,
    ProblemSpec,
    ProgressSink,
    StopCheck,
    TaskType,
    TrainConfig,
)
from ml_core.trainer import (
    TrainedModel,
    TrainingCancelled,
    nonprivate_schedule,
    predict_scores,
    private_schedule,
    train_model,
)

# TrainingResult, json_ready and resolve_inputs live in ml_core.runner; imported from here too.
__all__ = ["TrainingCancelled", "TrainingResult", "json_ready", "resolve_inputs", "run_tabular",
           "run_training"]


class TabularHooks(FamilyHooks):
    """The tabular MLP's hooks: binary classification from an encoded feature matrix."""

    def prepare(self, inputs: RunInputs) -> Prepared:
        frame, mapping, spec = inputs.frame, inputs.mapping, inputs.spec
        unit_column = spec.privacy_unit.column(mapping)
        # A private run fits its preprocessing under DP, charged with its SGD steps.
        plan = (_private_plan(frame=frame, mapping=mapping, privacy=inputs.privacy,
                              unit_column=unit_column)
                if inputs.privacy.enabled else None)
        # A numeric target (a grade) becomes two classes by the problem's declared rule.
        split = encode_and_split(frame, mapping, inputs.train, target_rule=spec.target_rule,
                                 person_column=unit_column,
                                 private_noise=plan.noise if plan is not None else None)
        if inputs.train.reweigh_attribute:
            split = _reweighed(split=split, frame=frame, mapping=mapping, spec=spec,
                               attribute=inputs.train.reweigh_attribute)
        # Banded over the whole table, as the dataset profile and mitigation band it (an
        # undeclared numeric attribute's quartile edges would otherwise differ between pages),
        # then the test rows by position (aligned with split.y_test).
        groups = fairness.sensitive_frame(frame, mapping, spec).loc[split.ids_test]
        return Prepared(split=split, groups=groups.reset_index(drop=True), plan=plan)

    def baseline(self, inputs: RunInputs, prepared: Prepared) -> Baseline:
        split = _reference_inputs(prepared.split)
        baseline_val, baseline_scores = logistic_regression_baseline(
            x_train=split.x_train, y_train=split.y_train, x_eval=(split.x_val, split.x_test),
            seed=inputs.train.seed,
        )
        threshold = choose_threshold(split.y_val, baseline_val)
        return Baseline(report={
            "name": "logistic_regression", "threshold": threshold,
            "metrics": binary_metrics(split.y_test, baseline_scores, threshold=threshold,
                                      metrics=inputs.spec.metrics)})

    def fit(self, inputs: RunInputs, prepared: Prepared, call: FitCall) -> Fitted:
        plan = prepared.plan if call.privacy is not None else None
        # Larger batches on large private tables; longer non-private trainings, ended by early
        # stopping (trainer.private_schedule, trainer.nonprivate_schedule).
        train = (private_schedule(inputs.train, n_units=prepared.split.n_train_units,
                                  n_features=prepared.split.n_features)
                 if call.privacy is not None else nonprivate_schedule(inputs.train))

        def fit(privacy: PrivacyConfig | None) -> Fitted:
            trained: TrainedModel = train_model(
                split=prepared.split, train=train, privacy=privacy,
                primary_metric=inputs.spec.primary_metric, stage=call.stage,
                progress=call.progress, should_stop=call.should_stop,
                checkpoint_path=call.checkpoint_path,
                # A private model is released as its last DP-SGD step left it (train_model);
                # a non-private one (the twin) is chosen on validation, its linear path and
                # (where the numeric columns are decorrelated) its inputs too.
                select_on_validation=plan is None, choose_linear_path=plan is None,
            )
            return Fitted.of(trained, model=trained.model)

        if plan is None:
            return fit(call.privacy)
        # One composed epsilon: the preprocessing mechanisms and the SGD steps.
        return plan.charged(fit, sgd=plan.sgd(split=prepared.split, train=train),
                            spec=inputs.spec, mapping=inputs.mapping)

    def evaluate(self, inputs: RunInputs, prepared: Prepared, fitted: Fitted) -> Evaluation:
        # The twin may have chosen the numeric columns without their decorrelation
        # (trainer.train_model): it is scored on the inputs it chose.
        split, cpu = fitted.trained.inputs(prepared.split), torch.device("cpu")
        # Each model decides at its own threshold, chosen on the validation split (never test);
        # the released private model's from a noisy histogram of those scores.
        val_scores = predict_scores(fitted.model, split.x_val, device=cpu)
        private = prepared.plan is not None and bool(fitted.privacy.get("enabled"))
        threshold = (prepared.plan.threshold(split=split, scores=val_scores,
                                             seed=inputs.train.seed)
                     if private else choose_threshold(split.y_val, val_scores))
        scores = predict_scores(fitted.model, split.x_test, device=cpu)
        report = fairness.audit(
            y_true=split.y_test, y_pred=(scores >= threshold).astype(int),
            sensitive=prepared.groups, policy=inputs.spec.fairness,
        )
        metrics = binary_metrics(split.y_test, scores, threshold=threshold,
                                 metrics=inputs.spec.metrics)
        return Evaluation(metrics=metrics, fairness=report,
                          detail=Scored(scores=scores, threshold=threshold))

    def split(self, inputs: RunInputs, prepared: Prepared) -> dict:
        return prepared.split.summary()

    def save(self, inputs: RunInputs, prepared: Prepared, model: Fitted,
             evaluation: Evaluation, *, directory: Path, metadata: dict) -> Saved:
        frame, mapping, spec, train = inputs.frame, inputs.mapping, inputs.spec, inputs.train
        split = prepared.split
        used_columns = feature_columns(frame, mapping)
        saved = save_model(
            model=model.model, encoder=split.encoder, directory=directory,
            metadata=json_ready({
                **metadata,
                "feature_columns": list(used_columns),
                "schema_fingerprint": schema_fingerprint(frame, used_columns),
                "positive_label": split.positive_label,
                "target_rule": (None if spec.target_rule is None
                                else dataclasses.asdict(spec.target_rule)),
                "threshold": evaluation.detail.threshold,
                "train_config": {
                    "epochs": train.epochs, "batch_size": train.batch_size,
                    "learning_rate": train.learning_rate,
                    "hidden_sizes": list(train.hidden_sizes), "patience": train.patience,
                    "test_fraction": train.test_fraction, "val_fraction": train.val_fraction,
                    "class_weighting": train.class_weighting,
                    "reweigh_attribute": train.reweigh_attribute,
                },
                "split": split.summary(),
                "device": model.device,
            }),
        )
        return Saved(path=saved.path, sha256=saved.sha256)

    def predictions(self, inputs: RunInputs, prepared: Prepared, baseline: Baseline,
                    evaluation: Evaluation) -> pd.DataFrame:
        """One row per test row: original row id, truth, score, decision, banded groups."""
        split, scored = prepared.split, evaluation.detail
        table = pd.DataFrame({
            "row_id": split.ids_test,
            "y_true": split.y_test.astype(int),
            "y_score": scored.scores.astype(float),
            "y_pred": (scored.scores >= scored.threshold).astype(int),
        })
        return with_groups(table, prepared.groups)

    def charts(self, inputs: RunInputs, prepared: Prepared, baseline: Baseline, model: Fitted,
               evaluation: Evaluation) -> dict:
        scored = evaluation.detail
        return classification_charts(prepared.split.y_test, scored.scores,
                                     threshold=scored.threshold)

    def notes(self, inputs: RunInputs, prepared: Prepared, model: Fitted, twin: Fitted | None,
              evaluation: Evaluation) -> list[str]:
        return _notes(split=prepared.split, train=inputs.train, privacy=model.privacy)

    def references(self, inputs: RunInputs, prepared: Prepared) -> dict:
        return _references(split=prepared.split, spec=inputs.spec, seed=inputs.train.seed)


@dataclass(frozen=True)
class Prepared:
    split: EncodedSplit
    groups: pd.DataFrame  # banded sensitive attributes of the test rows, by position
    plan: PrivatePlan | None = None  # a private run's preprocessing and SGD budget


@dataclass(frozen=True)
class Scored:
    scores: np.ndarray  # test rows
    threshold: float  # chosen on the validation rows


_run_tabular_hooks = family_runner(TabularHooks(), doc="""The tabular MLP's hooks through the
run skeleton (:mod:`ml_core.runner`).""")


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
    # Imported here: the registry imports every family module, and the tabular family's
    # run is this module's run_tabular.
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
    :func:`run_training` for binary classification with a private MLP, through the run
    skeleton (:class:`TabularHooks`)."""
    if spec.task_type is not TaskType.BINARY_CLASSIFICATION:
        raise ValueError(f"the tabular_mlp family trains binary classification, "
                         f"not {spec.task_type.value}")
    return _run_tabular_hooks(frame=frame, mapping=mapping, spec=spec, privacy=privacy,
                              train=train, artifact_dir=artifact_dir, progress=progress,
                              should_stop=should_stop, checkpoint_dir=checkpoint_dir)


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


def _reference_inputs(split: EncodedSplit) -> EncodedSplit:
    """The columns the non-private references read: the split's, without the numeric
    columns' decorrelation where the encoder has one (a device for DP-SGD's noise, not the
    data: rotated columns would hide thresholds from the trees and lower the bar the private
    model is held to)."""
    return without_whitening(split) or split


def _references(*, split: EncodedSplit, spec: ProblemSpec, seed: int) -> dict:
    """Gradient-boosted trees on the same split (ml_core.metrics.reference_models), on the
    columns :func:`_reference_inputs` gives."""
    split = _reference_inputs(split)
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
    # Only DP-SGD weights them (ml_core.trainer.nonprivate_schedule).
    if train.class_weighting and privacy.get("enabled"):
        notes.append("Rare positives were weighted by negatives/positives of the training "
                     f"rows ({positive_class_weight(split.y_train):.1f}) in the private "
                     "model's loss; the non-private twin leaves them unweighted, its "
                     "threshold chosen on the validation rows.")
    elif train.class_weighting:
        notes.append("Rare positives were not weighted in the loss (the problem weights them "
                     "under privacy only): the decision threshold, chosen on the validation "
                     "rows, sets the alarm rate.")
    if train.reweigh_attribute and split.w_train is not None:
        notes.append(
            f"Mitigation by reweighing on {train.reweigh_attribute}: each training row's loss "
            "was weighted by P(group) P(label) / P(group, label) of the training rows "
            f"(weights {float(split.w_train.min()):.2f} to {float(split.w_train.max()):.2f}). "
            "The weights come from the training rows' group and label counts without "
            "differential privacy (like the split sizes); under DP-SGD each weighted row's "
            "gradient is still clipped, so the stated epsilon holds for the model.")
    return notes
