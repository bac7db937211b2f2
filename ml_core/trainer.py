"""The training loop for the tabular model, in small named steps.

``train_model`` seeds everything, builds the model, optionally wraps it for DP-SGD, then runs
epochs with early stopping on the validation primary metric, keeping the best weights.
Every epoch it reports progress and checks for cancellation (also every few batches); a
cancellation raises :class:`TrainingCancelled` carrying the privacy spent so far.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core import privacy as dp
from ml_core.checkpoints import EpochCheckpoint
from ml_core.data import EncodedSplit
from ml_core.metrics import (
    METRIC_FUNCTIONS,
    binary_metrics,
    higher_is_better,
    positive_class_weight,
)
from ml_core.models import TabularMLP
from ml_core.progress import EpochLog
from ml_core.sampling import PersonRows
from ml_core.spec import PrivacyConfig, ProgressSink, StopCheck, TrainConfig

# Cancellation is also checked every this many batches, so a long epoch stops promptly.
STOP_CHECK_EVERY_BATCHES = 20
# Below this many parameters a CPU model trains on one thread: intra-op threads cost more
# than they save on matrices this small (4x slower with two threads on a busy 2-core box).
SMALL_MODEL_PARAMETERS = 200_000


class TrainingCancelled(Exception):
    """Raised when ``should_stop`` returned True; carries the privacy spent so far."""

    def __init__(self, privacy: dict | None = None) -> None:
        super().__init__("training cancelled")
        self.privacy = privacy or {}


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


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def cpu_threads_for(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Use one CPU thread while training a small model on the CPU, then restore."""
    size = sum(parameter.numel() for parameter in model.parameters())
    if device.type != "cpu" or size >= SMALL_MODEL_PARAMETERS:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (Opacus' noise uses torch's global RNG)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(x: np.ndarray, y: np.ndarray, *, batch_size: int, seed: int,
                weights: np.ndarray | None = None) -> DataLoader:
    """A shuffled loader with its own seeded generator (replaced by Poisson sampling under DP,
    whose sampler is seeded from this generator: see :mod:`ml_core.sampling`).

    With ``weights`` each batch is (features, labels, weights), else (features, labels).
    """
    tensors = [torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))]
    if weights is not None:
        tensors.append(torch.from_numpy(np.asarray(weights, dtype=np.float32)))
    dataset = TensorDataset(*tensors)
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


def run_epoch(
    *, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module, device: torch.device, should_stop: StopCheck | None,
) -> tuple[float, bool]:
    """One pass over ``loader``. Returns (mean training loss, cancelled)."""
    model.train()
    with warnings.catch_warnings():
        # Opacus' hooks on a first layer whose input needs no gradient: expected, harmless.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        return _epoch_batches(model=model, loader=loader, optimizer=optimizer,
                              loss_fn=loss_fn, device=device, should_stop=should_stop)


def _epoch_batches(
    *, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module, device: torch.device, should_stop: StopCheck | None,
) -> tuple[float, bool]:
    total, count = 0.0, 0
    for batch_index, batch in enumerate(loader):
        features, labels = batch[0], batch[1]
        if should_stop is not None and batch_index and batch_index % STOP_CHECK_EVERY_BATCHES == 0:
            if should_stop():
                return (total / count if count else math.nan), True
        features, labels = features.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        # Poisson sampling can draw an empty batch. It still goes through forward, backward
        # and step (its loss is NaN but its gradients are empty): Opacus then adds pure noise
        # and accounts the step, as the DP analysis assumes.
        if len(batch) > 2:
            # Per-row weights (reweighing): each row's own loss term times its weight, then
            # a plain mean over the batch, so Opacus' loss_reduction="mean" still holds.
            # Under DP the weight is inside each row's per-sample gradient, which is then
            # clipped to max_grad_norm: one row's contribution, hence the sensitivity, stays
            # bounded by max_grad_norm whatever its weight (a large weight is clipped, not
            # amplified), and the accountant's epsilon is unchanged.
            per_row = loss_fn(model(features), labels) * batch[2].to(device)
            # Person batches (persons, rows): a person's weights already average their rows,
            # so the loss sums each person's rows and averages over persons.
            loss = per_row.sum() / len(per_row) if per_row.dim() > 1 else per_row.mean()
        else:
            loss = loss_fn(model(features), labels)
        loss.backward()
        optimizer.step()
        if len(labels):
            total += float(loss.detach()) * len(labels)
            count += len(labels)
    return (total / count if count else math.nan), False


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


def train_model(
    *, split: EncodedSplit, train: TrainConfig, privacy: PrivacyConfig | None,
    primary_metric: str = "roc_auc", stage: str = "training",
    progress: ProgressSink | None = None, should_stop: StopCheck | None = None,
    checkpoint_path: Path | None = None, sample_weight: np.ndarray | None = None,
    select_on_validation: bool = True,
) -> TrainedModel:
    """Train one MLP on ``split`` (privately when ``privacy`` is given and enabled).

    ``select_on_validation=False`` runs every epoch and keeps the last one's weights:
    choosing the epoch (and when to stop) by the validation rows' metric is a decision
    computed from private rows that DP-SGD's epsilon does not cover, so a released private
    model is the plain output of its DP-SGD steps. The validation metric is still reported.

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
    device = resolve_device(train.device)
    seed_everything(train.seed)
    model: nn.Module = TabularMLP(split.n_features, train.hidden_sizes)
    with cpu_threads_for(model, device):
        return _fit(model=model, device=device, split=split, train=train, privacy=privacy,
                    primary_metric=primary_metric, stage=stage, progress=progress,
                    should_stop=should_stop, checkpoint_path=checkpoint_path,
                    sample_weight=sample_weight, select_on_validation=select_on_validation)


def _fit(
    *, model: nn.Module, device: torch.device, split: EncodedSplit, train: TrainConfig,
    privacy: PrivacyConfig | None, primary_metric: str, stage: str,
    progress: ProgressSink | None, should_stop: StopCheck | None, checkpoint_path: Path | None,
    sample_weight: np.ndarray | None = None, select_on_validation: bool = True,
) -> TrainedModel:
    private = privacy is not None and privacy.enabled
    if private:
        model = dp.prepare_module(model)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.learning_rate)
    person_level = private and split.person_column is not None
    if person_level:
        loader = make_person_loader(split, batch_size=train.batch_size, seed=train.seed,
                                    max_rows=privacy.max_rows_per_person, weights=sample_weight)
    else:
        loader = make_loader(split.x_train, split.y_train, batch_size=train.batch_size,
                             seed=train.seed, weights=sample_weight)
    wrapped: dp.PrivateTraining | None = None
    if private:
        wrapped = dp.make_private(
            model=model, optimizer=optimizer, loader=loader, config=privacy, epochs=train.epochs
        )
        model, optimizer, loader = wrapped.module, wrapped.optimizer, wrapped.loader
    loss_fn = make_loss(split, train, device=device,
                        per_row=sample_weight is not None or person_level)

    def privacy_so_far() -> dict:
        return wrapped.report() if wrapped is not None else dp.disabled_report()

    def cancel() -> TrainingCancelled:
        return TrainingCancelled(privacy=privacy_so_far())

    log = EpochLog(model=model, stage=stage, total_epochs=train.epochs,
                   patience=train.patience, progress=progress)
    checkpoint = EpochCheckpoint(
        checkpoint_path, inputs=(split.x_train, split.y_train, split.x_val, split.y_val,
                                 sample_weight),
        train=train, stage=stage, model=model, optimizer=optimizer, loader=loader,
        wrapped=wrapped, log=log)
    first_epoch, stopped_early = checkpoint.resume()
    for epoch in range(first_epoch, train.epochs + 1):
        if stopped_early:
            break
        if should_stop is not None and should_stop():
            raise cancel()
        loss, cancelled = run_epoch(
            model=model, loader=loader, optimizer=optimizer, loss_fn=loss_fn,
            device=device, should_stop=should_stop,
        )
        if cancelled:
            raise cancel()
        val_metric, key = validation_score(model, split, metric=primary_metric, device=device)
        if not select_on_validation:
            key = float(epoch)  # every epoch improves on the last: the last one is kept
        log.record(model=model, epoch=epoch, loss=loss, val_metric=val_metric, key=key,
                   epsilon=wrapped.epsilon() if wrapped is not None else None)
        stopped_early = log.patience_spent and epoch < train.epochs
        checkpoint.save(epoch, stopped_early=stopped_early)

    return TrainedModel(
        model=log.load_best(TabularMLP(split.n_features, train.hidden_sizes)),
        history=log.history,
        best_epoch=log.best_epoch,
        epochs_run=len(log.history),
        stopped_early=stopped_early,
        privacy=privacy_so_far(),
        device=str(device),
        val_metric_name=primary_metric,
    )

