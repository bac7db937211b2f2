"""A small training loop over in-memory tensors, with optional DP-SGD, shared by the
forecasting, recommendation and sequence regression families.

The tabular loop (``ml_core.trainer``) is built around one feature matrix and a binary
label; these families feed several tensors (numeric features, series or user/item
indices) and their own loss. The privacy wiring is the same: ``ml_core.privacy``'s
``prepare_module`` and ``make_private`` (Poisson sampling, noise searched for the exact
step count, ``loss_reduction="mean"``, so every ``loss_fn`` here must be mean-reduced),
and so are the per-epoch checkpoints a crashed run resumes from (``ml_core.checkpoints``).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core import privacy as dp
from ml_core.checkpoints import EpochCheckpoint
from ml_core.progress import EpochLog
from ml_core.spec import PrivacyConfig, ProgressSink, StopCheck, TrainConfig
from ml_core.trainer import (
    STOP_CHECK_EVERY_BATCHES,
    TrainingCancelled,
    cpu_threads_for,
    resolve_device,
    seed_everything,
)


@dataclass(frozen=True)
class FittedModule:
    """The best module of one training (by the validation score), unwrapped, eval, CPU."""

    module: nn.Module
    history: list[dict]  # per epoch: epoch, loss, val_metric, epsilon
    best_epoch: int
    privacy: dict  # privacy.disabled_report() for a non-private run
    device: str
    notes: tuple[str, ...] = ()


class BatchedTensorDataset(TensorDataset):
    """A TensorDataset that fetches a whole batch with one indexing per tensor.

    PyTorch's fetcher calls ``__getitems__`` when a dataset has it; fetching row by row
    and stacking cost as much as the training step here. Opacus' Poisson loader keeps the
    dataset and the collate function, so private training gets the same speed-up.
    """

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(tensor[index] for tensor in self.tensors)


def _already_batched(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(batch)


def _loader(tensors: tuple[torch.Tensor, ...], *, batch_size: int, seed: int) -> DataLoader:
    dataset = BatchedTensorDataset(*tensors)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=max(1, min(batch_size, len(dataset))), shuffle=True,
        generator=generator, collate_fn=_already_batched,
    )


def fit_module(
    *,
    build: Callable[[], nn.Module],
    tensors: tuple[torch.Tensor, ...],
    loss_fn: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor],
    val_score: Callable[[nn.Module], float],
    train: TrainConfig,
    privacy: PrivacyConfig | None,
    stage: str,
    progress: ProgressSink | None,
    should_stop: StopCheck | None,
    weight_decay: float = 0.0,
    checkpoint_path: Path | None = None,
) -> FittedModule:
    """Train ``build()`` on ``tensors`` (one training example per first-axis row).

    ``loss_fn(module, batch)`` returns the mean loss of a batch (on the module's device);
    ``val_score(module)`` returns a validation score to maximise (called with the module
    in eval mode, on the CPU copy of its weights). Early stopping after
    ``train.patience`` epochs without gain; the best weights are kept. Seeded by
    ``train.seed``. Raises :class:`TrainingCancelled` with the privacy spent so far.

    With ``checkpoint_path`` a checkpoint is written there every epoch, and one found there
    (an earlier attempt that died) is resumed: the result equals an uninterrupted run's
    (:mod:`ml_core.checkpoints`). Its signature covers ``tensors``, the schedule, privacy
    and ``weight_decay``; the validation data behind ``val_score`` is taken to come from the
    same inputs (the caller keeps one checkpoint path per run and stage).
    """
    device = resolve_device(train.device)
    seed_everything(train.seed)
    model = build()
    notes: list[str] = []
    private = privacy is not None and privacy.enabled
    if private:
        fixed = dp.prepare_module(model)
        if fixed is not model:
            notes.append("Opacus' ModuleValidator replaced layers it cannot give per-sample "
                         "gradients for (e.g. BatchNorm by GroupNorm).")
        model = fixed
    with cpu_threads_for(model, device):
        return _fit(model=model, build=build, device=device, tensors=tensors, loss_fn=loss_fn,
                    val_score=val_score, train=train, privacy=privacy if private else None,
                    stage=stage, progress=progress, should_stop=should_stop,
                    weight_decay=weight_decay, notes=notes, checkpoint_path=checkpoint_path)


def _fit(
    *, model: nn.Module, build: Callable[[], nn.Module], device: torch.device,
    tensors: tuple[torch.Tensor, ...], loss_fn: Callable, val_score: Callable,
    train: TrainConfig, privacy: PrivacyConfig | None, stage: str,
    progress: ProgressSink | None, should_stop: StopCheck | None, weight_decay: float,
    notes: list[str], checkpoint_path: Path | None,
) -> FittedModule:
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.learning_rate,
                                 weight_decay=weight_decay)
    loader = _loader(tensors, batch_size=train.batch_size, seed=train.seed)
    wrapped: dp.PrivateTraining | None = None
    if privacy is not None:
        wrapped = dp.make_private(model=model, optimizer=optimizer, loader=loader,
                                  config=privacy, epochs=train.epochs)
        model, optimizer, loader = wrapped.module, wrapped.optimizer, wrapped.loader

    def privacy_so_far() -> dict:
        return wrapped.report() if wrapped is not None else dp.disabled_report()

    def evaluate() -> float:
        plain = dp.unwrap(model)
        copy_on_cpu = copy.deepcopy(plain).cpu().eval()
        return float(val_score(copy_on_cpu))

    log = EpochLog(model=model, stage=stage, total_epochs=train.epochs,
                   patience=train.patience, progress=progress)
    checkpoint = EpochCheckpoint(
        checkpoint_path, inputs=tensors, train=train, stage=stage, model=model,
        optimizer=optimizer, loader=loader, wrapped=wrapped, log=log,
        weight_decay=weight_decay)
    first_epoch, stopped_early = checkpoint.resume()
    for epoch in range(first_epoch, train.epochs + 1):
        if stopped_early:
            break
        if should_stop is not None and should_stop():
            raise TrainingCancelled(privacy=privacy_so_far())
        loss, cancelled = _epoch(model=model, loader=loader, optimizer=optimizer,
                                 loss_fn=loss_fn, device=device, should_stop=should_stop)
        if cancelled:
            raise TrainingCancelled(privacy=privacy_so_far())
        score = evaluate()
        log.record(model=model, epoch=epoch, loss=loss, val_metric=score, key=score,
                   epsilon=wrapped.epsilon() if wrapped is not None else None)
        stopped_early = log.patience_spent
        checkpoint.save(epoch, stopped_early=stopped_early)
    return FittedModule(module=log.load_best(build()), history=log.history,
                        best_epoch=log.best_epoch, privacy=privacy_so_far(), device=str(device),
                        notes=tuple(notes))


def _epoch(
    *, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
    loss_fn: Callable, device: torch.device, should_stop: StopCheck | None,
) -> tuple[float, bool]:
    model.train()
    total, count = 0.0, 0
    with warnings.catch_warnings():
        # Opacus' hooks on a first layer whose input needs no gradient: expected, harmless.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for index, batch in enumerate(loader):
            if (should_stop is not None and index and index % STOP_CHECK_EVERY_BATCHES == 0
                    and should_stop()):
                return (total / count if count else math.nan), True
            batch = tuple(tensor.to(device) for tensor in batch)
            size = len(batch[0])
            optimizer.zero_grad(set_to_none=True)
            # An empty Poisson batch still steps: Opacus adds pure noise and accounts it,
            # as the DP analysis assumes (its NaN loss is not counted).
            loss = loss_fn(model, batch)
            loss.backward()
            optimizer.step()
            if size:
                total += float(loss.detach()) * size
                count += size
    return (total / count if count else math.nan), False

