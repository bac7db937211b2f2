"""Training over in-memory tensors for the forecasting, recommendation and sequence
regression families: an adapter over the one training loop.

The tabular trainer (``ml_core.trainer``) is built around one feature matrix and a binary
label; these families feed several tensors (numeric features, series or user/item
indices) and their own loss. The loop (:mod:`ml_core.training_loop`) is the same for
everyone: DP-SGD under ``ml_core.privacy``'s rules (Poisson sampling, noise searched for
the exact step count, ``loss_reduction="mean"``, so every ``loss_fn`` here must be
mean-reduced), early stopping and the per-epoch checkpoints a crashed run resumes from.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ml_core import privacy as dp
from ml_core.sampling import PersonExamples
from ml_core.spec import PrivacyConfig, ProgressSink, StopCheck, TrainConfig
from ml_core.training_loop import LoopPlan, StopReason, resolve_device, run_loop


@dataclass(frozen=True)
class FittedModule:
    """The best module of one training (by the validation score), unwrapped, eval, CPU."""

    module: nn.Module
    history: list[dict]  # per epoch: epoch, loss, val_metric, epsilon
    best_epoch: int
    privacy: dict  # privacy.disabled_report() for a non-private run
    device: str
    notes: tuple[str, ...] = ()
    stop_reason: StopReason = "epochs"


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
    dataset: Dataset | None = None,
    select_on_validation: bool = True,
    persons: np.ndarray | None = None,
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

    ``dataset`` (default: the rows of ``tensors``) replaces the training examples, e.g.
    :class:`ml_core.sampling.PersonRows` (collated by PyTorch's default collate; ``tensors``
    then only bind the checkpoints).
    ``persons`` (one privacy-unit value per example) makes a private training person-level:
    persons are Poisson-sampled and each brings one of their examples per step
    (:class:`ml_core.sampling.PersonExamples`). ``select_on_validation=False`` keeps the last
    epoch: no epoch is chosen on the (private) validation rows (:class:`LoopPlan`).
    """
    device = resolve_device(train.device)

    def batch_loss(module: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        batch = tuple(tensor.to(device) for tensor in batch)
        return loss_fn(module, batch), len(batch[0])

    def evaluate(module: nn.Module) -> tuple[float, float]:
        copy_on_cpu = copy.deepcopy(dp.unwrap(module)).cpu().eval()
        score = float(val_score(copy_on_cpu))
        return score, score

    private = privacy is not None and privacy.enabled
    collate = None if dataset is not None else _already_batched
    if dataset is None:
        dataset = (PersonExamples(tensors=tensors, persons=persons, seed=train.seed)
                   if private and persons is not None else BatchedTensorDataset(*tensors))
    plan = LoopPlan(
        build=build, dataset=dataset, batch_size=train.batch_size,
        collate_fn=collate, batch_loss=batch_loss, validate=evaluate, train=train,
        privacy=privacy, stage=stage, device=device,
        optimizer=lambda module: torch.optim.Adam(module.parameters(), lr=train.learning_rate,
                                                  weight_decay=weight_decay),
        checkpoint_path=checkpoint_path,
        checkpoint_inputs=tensors if persons is None else (*tensors, persons),
        checkpoint_settings={"weight_decay": weight_decay},
        select_on_validation=select_on_validation,
    )
    result = run_loop(plan, progress=progress, should_stop=should_stop)
    notes = ()
    if result.module_fixed:
        notes = ("Opacus' ModuleValidator replaced layers it cannot give per-sample "
                 "gradients for (e.g. BatchNorm by GroupNorm).",)
    return FittedModule(module=result.module, history=result.history,
                        best_epoch=result.best_epoch, privacy=result.privacy,
                        device=result.device, notes=notes, stop_reason=result.stop_reason)
