"""The tabular model's training: an adapter over the one training loop.

``train_model`` describes the tabular MLP's training (its rows, its weighted binary
cross-entropy, its validation metric) as a :class:`~ml_core.training_loop.LoopPlan`;
:func:`ml_core.training_loop.run_loop` seeds, wraps for DP-SGD when private, runs the epochs
with early stopping on the validation primary metric and keeps the best weights. A
cancellation raises :class:`TrainingCancelled` carrying the privacy spent so far.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ml_core.data import EncodedSplit, without_whitening
from ml_core.metrics import (
    METRIC_FUNCTIONS,
    binary_metrics,
    higher_is_better,
    positive_class_weight,
)
from ml_core.models import TabularMLP
from ml_core.sampling import PersonRows
from ml_core.spec import PrivacyConfig, ProgressSink, StopCheck, TrainConfig
from ml_core.training_loop import (
    LoopPlan,
    StopReason,
    TrainingCancelled,
    cpu_threads_for,
    resolve_device,
    run_loop,
    seed_everything,
)

# Re-exported: the families and the platform import these from here.
__all__ = [
    "TrainedModel", "TrainingCancelled", "cpu_threads_for", "make_loader", "make_loss",
    "predict_scores", "resolve_device", "seed_everything", "train_model", "validation_score",
]


@dataclass(frozen=True)
class TrainedModel:
    """The best model of one training, unwrapped from Opacus, in eval mode on the CPU."""

    model: TabularMLP
    history: list[dict]  # per epoch: epoch, loss, val_metric, epsilon
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    privacy: dict  # privacy.disabled_report() for a non-private model
    device: str
    val_metric_name: str
    stop_reason: StopReason = "epochs"
    # A training that chose among candidates on the validation rows (``choose_linear_path``):
    # each candidate's linear path, whether it read the whitened inputs, its validation
    # metric and whether it was kept, in training order; empty otherwise.
    candidates: tuple[dict, ...] = ()
    # The inputs the model reads where they are not the split it was given (the twin chose
    # the numeric columns without their decorrelation, data.without_whitening); None:
    # that split. Score it on these (:meth:`inputs`).
    split: EncodedSplit | None = None

    def inputs(self, split: EncodedSplit) -> EncodedSplit:
        """The split to score this model on, ``split`` being the one it was trained from."""
        return split if self.split is None else self.split


def tabular_dataset(x: np.ndarray, y: np.ndarray,
                    weights: np.ndarray | None = None) -> TensorDataset:
    """(features, labels) rows, or (features, labels, weights) with ``weights``."""
    tensors = [torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))]
    if weights is not None:
        tensors.append(torch.from_numpy(np.asarray(weights, dtype=np.float32)))
    return TensorDataset(*tensors)


def make_loader(x: np.ndarray, y: np.ndarray, *, batch_size: int, seed: int,
                weights: np.ndarray | None = None) -> DataLoader:
    """A shuffled loader with its own seeded generator, as the training loop builds it
    (replaced by Poisson sampling under DP, whose sampler is seeded from this generator:
    see :mod:`ml_core.sampling`).

    With ``weights`` each batch is (features, labels, weights), else (features, labels).
    """
    dataset = tabular_dataset(x, y, weights)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=min(batch_size, len(dataset)), shuffle=True, generator=generator
    )


def make_person_loader(split: EncodedSplit, *, batch_size: int, seed: int, max_rows: int,
                       weights: np.ndarray | None = None) -> DataLoader:
    """A loader of persons (:class:`ml_core.sampling.PersonRows`: up to ``max_rows`` rows
    each, batches of (features, labels, weights)), ``batch_size`` persons per batch; under
    DP its Poisson loader samples persons at the accountant's rate."""
    dataset = PersonRows(features=split.x_train, labels=split.y_train,
                         persons=split.persons_train, max_rows=max_rows, seed=seed,
                         row_weights=weights)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=True,
                      generator=generator)


def predict_scores(model: nn.Module, x: np.ndarray, *, device: torch.device) -> np.ndarray:
    """Positive-class probabilities for ``x`` (the model is left in the mode it was in)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x).to(device))
        scores = torch.sigmoid(logits).double().cpu().numpy()
    model.train(was_training)
    return scores


def validation_score(
    model: nn.Module, split: EncodedSplit, *, metric: str, device: torch.device
) -> tuple[float, float]:
    """(reported value, value to maximise) of ``metric`` on the validation rows.

    When the metric is undefined (a validation part with one class), the negative
    validation log loss is maximised instead, so early stopping still works.
    """
    scores = predict_scores(model, split.x_val, device=device)
    value = (binary_metrics(split.y_val, scores, metrics=(metric,))[metric]
             if metric in METRIC_FUNCTIONS else math.nan)
    if math.isnan(value):
        clipped = np.clip(scores, 1e-7, 1 - 1e-7)
        log_loss = -np.mean(split.y_val * np.log(clipped) + (1 - split.y_val) * np.log(1 - clipped))
        return math.nan, float(-log_loss)
    return float(value), float(value if higher_is_better(metric) else -value)


def tabular_batch_loss(loss_fn: nn.Module, device: torch.device):  # noqa: ANN201
    """The loop's ``batch_loss`` for (features, labels[, weights]) batches.

    Per-row weights (reweighing): each row's own loss term times its weight, then a plain
    mean over the batch, so Opacus' loss_reduction="mean" still holds. Under DP the weight
    is inside each row's per-sample gradient, which is then clipped to max_grad_norm: one
    row's contribution, hence the sensitivity, stays bounded by max_grad_norm whatever its
    weight (a large weight is clipped, not amplified), and the accountant's epsilon is
    unchanged.
    """

    def batch_loss(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        features, labels = batch[0].to(device), batch[1].to(device)
        if len(batch) > 2:
            per_row = loss_fn(model(features), labels) * batch[2].to(device)
            # Person batches (persons, rows): a person's weights already average their rows,
            # so the loss sums each person's rows and averages over persons (the examples
            # Opacus' loss_reduction="mean" counts).
            loss = per_row.sum() / len(per_row) if per_row.dim() > 1 else per_row.mean()
            return loss, len(labels)
        return loss_fn(model(features), labels), len(labels)

    return batch_loss


def make_loss(split: EncodedSplit, train: TrainConfig, *, device: torch.device,
              per_row: bool = False) -> nn.Module:
    """Binary cross-entropy on logits, mean-reduced; positives weighted by
    ``n_negative / n_positive`` of the training rows when ``train.class_weighting``.

    The weight only scales each positive row's own loss term, and the reduction stays a
    plain mean over the batch (``pos_weight`` does not renormalise by the weights' sum), so
    it still matches Opacus' ``loss_reduction="mean"`` set in ``privacy.make_private``:
    per-sample gradients are those of each row's weighted loss, clipped as usual. (The
    weight is computed from the training labels, which DP-SGD treats as non-private
    metadata, like the split sizes.)

    ``per_row=True`` returns each row's loss unreduced (``reduction="none"``): the caller
    multiplies by the rows' sample weights and takes the mean (see ``_epoch_batches``).
    """
    reduction = "none" if per_row else "mean"
    if not train.class_weighting:
        return nn.BCEWithLogitsLoss(reduction=reduction)
    weight = positive_class_weight(split.y_train)
    return nn.BCEWithLogitsLoss(
        reduction=reduction, pos_weight=torch.tensor(weight, dtype=torch.float32, device=device)
    )


# A private run on a large table samples at most this share of its training persons per step:
# DP-SGD's noise per step is fixed (sigma * max_grad_norm), so fewer, larger batches carry
# more signal for it (measured on the wide synthetic table of docs/real-data.md: ROC AUC
# 0.59 at 64 rows, 0.62 at 256, 0.635 at 512 of 13,000 training rows).
PRIVATE_SAMPLE_RATE = 0.04
# The learning rate of such an enlarged private batch at most, on a wide table: Adam moves
# every weight by about the rate each step whatever its gradient, so the many hashed and
# one-hot weights that see almost pure noise drift by lr * sqrt(steps) (ROC AUC 0.59 at
# 1e-2, 0.62 at 3e-3).
PRIVATE_LARGE_BATCH_LEARNING_RATE = 3e-3
# A table of at most this many features keeps its learning rate: its few weights all carry
# signal, and the cap only slowed them (AI4I, 5 features, private PR AUC at seeds 0-2:
# 0.24, 0.27, 0.16 at 3e-3; 0.38, 0.38, 0.33 at its 1e-2).
PRIVATE_NARROW_FEATURES = 32


def private_schedule(train: TrainConfig, *, n_units: int,
                     n_features: int | None = None) -> TrainConfig:
    """The training configuration a private tabular run uses on ``n_units`` training
    persons: the configured batch, or ``PRIVATE_SAMPLE_RATE`` of the persons when that is
    larger (with the learning rate capped at ``PRIVATE_LARGE_BATCH_LEARNING_RATE`` unless
    the table has at most ``PRIVATE_NARROW_FEATURES`` features). Small tables keep their
    configuration. The noise is searched for the steps this schedule takes
    (``ml_core.privacy.make_private``), so the whole budget is spent on them."""
    batch = int(n_units * PRIVATE_SAMPLE_RATE)
    if batch <= train.batch_size:
        return train
    narrow = n_features is not None and n_features <= PRIVATE_NARROW_FEATURES
    return dataclasses.replace(
        train, batch_size=batch,
        learning_rate=(train.learning_rate if narrow
                       else min(train.learning_rate, PRIVATE_LARGE_BATCH_LEARNING_RATE)))


# A private training that weights its rare positives clips every row's gradient at this many
# times the configured bound. At the bound of 1 every row's gradient was clipped, so the
# positives' weight (28.5 on AI4I) was a no-op: AI4I's private PR AUC was 0.377 at seed 0
# with and without it. At 20 times the bound a negative's gradient passes unclipped and a
# weighted positive's is clipped at the bound. AI4I private PR AUC, seeds 0-2: 0.377, 0.384,
# 0.332 at 1; 0.492, 0.460, 0.393 at 10; 0.494, 0.473, 0.410 at 20; 0.493, 0.469, 0.406 at
# 30; 0.485, 0.450, 0.376 at 50 (docs/real-data.md). A public constant, not the data's
# weight: the noise is the noise multiplier times the bound, and the report states the
# bound; the multiplier, the sampling and the steps, hence epsilon, are unchanged.
WEIGHTED_CLIPPING_FACTOR = 20.0


def private_clipping(privacy: PrivacyConfig, train: TrainConfig) -> PrivacyConfig:
    """The privacy configuration a private tabular training runs under: the configured
    one, its clipping bound times ``WEIGHTED_CLIPPING_FACTOR`` when the training weights
    its positives (``train.class_weighting``)."""
    if not train.class_weighting:
        return privacy
    return dataclasses.replace(privacy,
                               max_grad_norm=privacy.max_grad_norm * WEIGHTED_CLIPPING_FACTOR)


# A non-private training (the twin, or a run without privacy) of a rare-event problem (one
# that weights its positives) runs up to this many times the planned epochs, at this many
# times the patience: its validation metric, read on a few dozen positives, jumps from epoch
# to epoch, and the epoch cap or a short patience ended it before it had learnt (AI4I's 3 %
# failures: PR AUC 0.70 at 40 epochs, 0.75 at 120). On balanced outcomes the longer
# patience only picked later, overfitted epochs on a small validation split (German credit
# twin 0.763 -> 0.724), so they keep their schedule.
NONPRIVATE_EPOCH_FACTOR = 3
NONPRIVATE_PATIENCE_FACTOR = 2


def nonprivate_schedule(train: TrainConfig) -> TrainConfig:
    """The training configuration of a non-private tabular training (see above). It also
    drops the positives' weight: a non-private model's decision threshold is chosen on the
    validation rows, which sets its alarm rate, and the weight (about 30 on AI4I) only made
    the ranking it learns coarser (AI4I twin PR AUC, seeds 0-2: 0.637, 0.691, 0.789
    weighted; 0.780, 0.689, 0.740 unweighted). Under DP-SGD the weight stays: it is what
    lets a clipped positive's gradient stand out of the noise."""
    if not train.class_weighting:
        return train
    return dataclasses.replace(train, epochs=train.epochs * NONPRIVATE_EPOCH_FACTOR,
                               patience=train.patience * NONPRIVATE_PATIENCE_FACTOR,
                               class_weighting=False)


def wide_and_deep(split: EncodedSplit) -> bool:
    """Whether the MLP gets a linear path beside its hidden layers: on tables with hashed
    wide code columns, where the logit needs what logistic regression reads off the sparse
    codes (the wide synthetic table of docs/real-data.md: private 0.59 -> 0.611 ROC AUC);
    not on narrow tables, where it cost the models (student-por, seeds 0-2: twin 0.846 ->
    0.820, private 0.791 -> 0.759 mean ROC AUC)."""
    return bool(split.encoder.hashed)


def train_model(
    *, split: EncodedSplit, train: TrainConfig, privacy: PrivacyConfig | None,
    primary_metric: str = "roc_auc", stage: str = "training",
    progress: ProgressSink | None = None, should_stop: StopCheck | None = None,
    checkpoint_path: Path | None = None, sample_weight: np.ndarray | None = None,
    select_on_validation: bool = True, choose_linear_path: bool = False,
    linear_path: bool | None = None,
) -> TrainedModel:
    """Train one MLP on ``split`` (privately when ``privacy`` is given and enabled).

    ``choose_linear_path`` (a non-private training selected on validation: the twin, a run
    without privacy) trains the MLP with and without its linear path
    (:func:`wide_and_deep`), and, where the split's numeric columns are decorrelated
    (``TabularEncoder.whitening``), each also on them without it
    (:func:`ml_core.data.without_whitening`); it keeps the candidate with the better
    validation metric (``TrainedModel.candidates`` records them, ``TrainedModel.inputs``
    gives the inputs to score it on). A private training keeps the rule and the whitening,
    since choosing on the validation rows is not covered by its epsilon.

    ``select_on_validation=False`` runs every epoch and keeps the last one's weights:
    choosing the epoch (and when to stop) by the validation rows' metric is a decision
    computed from private rows that DP-SGD's epsilon does not cover, so a released private
    model is the plain output of its DP-SGD steps. The validation metric is still reported.

    ``linear_path`` forces the linear path on or off (None: :func:`wide_and_deep`).

    ``sample_weight`` (one per training row; default ``split.w_train``) weights each row's
    loss, e.g. the reweighing of :func:`ml_core.mitigation.reweighing_weights`.

    Seeded by ``train.seed``: the same inputs give the same model on the same device.
    Raises :class:`TrainingCancelled` when ``should_stop()`` returns True.
    """
    if sample_weight is None:
        sample_weight = split.w_train
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float32).reshape(-1)
        if len(sample_weight) != len(split.y_train):
            raise ValueError("sample_weight needs one weight per training row")
        if not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
            raise ValueError("sample weights must be finite and non-negative")
    private = privacy is not None and privacy.enabled
    if private:
        privacy = private_clipping(privacy, train)
    if choose_linear_path and select_on_validation and not private:
        return _best_candidate(
            split=split, train=train, primary_metric=primary_metric, stage=stage,
            progress=progress, should_stop=should_stop, checkpoint_path=checkpoint_path,
            sample_weight=sample_weight)
    device = resolve_device(train.device)
    person_level = private and split.person_column is not None
    loss_fn = make_loss(split, train, device=device,
                        per_row=sample_weight is not None or person_level)

    def validate(model: nn.Module) -> tuple[float, float]:
        return validation_score(model, split, metric=primary_metric, device=device)

    if person_level:
        # DP-SGD over persons: PersonRows' Poisson loader samples persons (see sampling).
        dataset: Dataset = PersonRows(features=split.x_train, labels=split.y_train,
                                      persons=split.persons_train,
                                      max_rows=privacy.max_rows_per_person, seed=train.seed,
                                      row_weights=sample_weight)
        inputs: tuple = (split.x_train, split.y_train, split.x_val, split.y_val,
                         sample_weight, split.persons_train)
    else:
        dataset = tabular_dataset(split.x_train, split.y_train, sample_weight)
        inputs = (split.x_train, split.y_train, split.x_val, split.y_val, sample_weight)
    linear_skip = wide_and_deep(split) if linear_path is None else linear_path
    plan = LoopPlan(
        build=lambda: TabularMLP(split.n_features, train.hidden_sizes,
                                 linear_skip=linear_skip),
        dataset=dataset,
        batch_size=train.batch_size, batch_loss=tabular_batch_loss(loss_fn, device),
        validate=validate, train=train, privacy=privacy, stage=stage, device=device,
        checkpoint_path=checkpoint_path, checkpoint_inputs=inputs,
        select_on_validation=select_on_validation,
    )
    result = run_loop(plan, progress=progress, should_stop=should_stop)
    return TrainedModel(
        model=result.module, history=result.history, best_epoch=result.best_epoch,
        epochs_run=result.epochs_run, stopped_early=result.stopped_early,
        privacy=result.privacy, device=result.device, val_metric_name=primary_metric,
        stop_reason=result.stop_reason,
    )


def _one_of_passes(progress: ProgressSink | None, done: int, *, passes: int
                   ) -> ProgressSink | None:
    """``progress`` for the training after ``done`` of ``passes`` equal ones: its epochs
    counted on from theirs, out of all of theirs, so one stage's bar never runs back."""
    if progress is None:
        return None

    def report(*, epoch: int, total_epochs: int, **rest) -> None:
        progress(epoch=done * total_epochs + epoch, total_epochs=passes * total_epochs, **rest)

    return report


def _best_candidate(*, split: EncodedSplit, train: TrainConfig, primary_metric: str,
                    checkpoint_path: Path | None, **common) -> TrainedModel:
    """:func:`train_model` without privacy, with and then without the MLP's linear path,
    on ``split`` and then, where its numeric columns are decorrelated, on them without it
    (each with its own checkpoint), the better on the validation rows kept (the first on a
    tie), the candidates recorded. Measured on the real files of docs/real-data.md (seed
    0, twin ROC AUC): German credit 0.750 -> 0.763 and MIMIC-III admissions 0.569 -> 0.743
    with the linear path, student-por 0.885 without it; AI4I's twin (PR AUC) in
    docs/real-data.md, "Correlated numeric columns of a large table"."""
    inputs = [(split, bool(split.encoder.whitening))]
    unwhitened = without_whitening(split)
    if unwhitened is not None:
        inputs.append((unwhitened, False))
    candidates = [(candidate, whitened, linear_path)
                  for candidate, whitened in inputs for linear_path in (True, False)]
    best, best_value, chosen, tried = None, -math.inf, 0, []
    progress = common.pop("progress", None)
    for done, (candidate, whitened, linear_path) in enumerate(candidates):
        path = (None if checkpoint_path is None else checkpoint_path.with_name(
            f"{checkpoint_path.stem}-{'linear' if linear_path else 'deep'}"
            f"{'' if candidate is split else '-unwhitened'}{checkpoint_path.suffix}"))
        trained = train_model(split=candidate, train=train, privacy=None,
                              primary_metric=primary_metric, checkpoint_path=path,
                              linear_path=linear_path,
                              progress=_one_of_passes(progress, done,
                                                      passes=len(candidates)), **common)
        value = validation_score(trained.model, candidate, metric=primary_metric,
                                 device=torch.device("cpu"))[1]
        tried.append({"linear_path": linear_path, "whitened": whitened,
                      "val_metric": float(value)})
        if best is None or value > best_value:
            best, best_value, chosen = trained, value, done
    kept = candidates[chosen][0]
    return dataclasses.replace(
        best, candidates=tuple({**entry, "chosen": i == chosen} for i, entry in enumerate(tried)),
        split=None if kept is split else kept)
