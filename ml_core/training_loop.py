"""The one training loop every model family trains through, private or not.

A family describes *what* it trains in a :class:`LoopPlan` (how to build the module, its
training rows, the loss of one batch, the validation score); :func:`run_loop` owns *how*,
once for everyone, so the privacy rules are kept in one place:

* Under DP-SGD (:func:`ml_core.privacy.make_private`): Poisson sampling at Opacus' sample
  rate and step count (:mod:`ml_core.sampling`), the noise searched for the exact number of
  planned steps, Opacus' noise and PRV accountant, and ``loss_reduction="mean"``, so every
  ``batch_loss`` must return the plain mean of its rows' loss terms.
* The book-keeping clipping (:mod:`ml_core.fast_clipping`) when every trainable layer has
  it, Opacus' per-sample hooks otherwise; the privacy report's ``clipping`` says which and
  why.
* An empty Poisson batch still goes through forward, backward and ``step``: Opacus then
  adds pure noise and the accountant counts the step, as the DP analysis assumes (its NaN
  loss is left out of the epoch's mean loss).
* Without privacy the same loop runs on a shuffled loader, with no clipping and no noise.

Around the steps: cancellation (``should_stop``) before every step, early stopping on the
validation score with the best epoch's weights kept, per-epoch checkpoints and exact resume
(:mod:`ml_core.checkpoints`), bfloat16 autocast on CUDA when a plan asks for it, and a
record of why the training stopped and how much of the budget is left.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ml_core import fast_clipping
from ml_core import privacy as dp
from ml_core.cancellation import TrainingCancelled
from ml_core.checkpoints import EpochCheckpoint
from ml_core.progress import EpochLog
from ml_core.spec import PrivacyConfig, ProgressSink, StopCheck, TrainConfig

# Below this many parameters a CPU model trains on one thread: intra-op threads cost more
# than they save on matrices this small (4x slower with two threads on a busy 2-core box).
SMALL_MODEL_PARAMETERS = 200_000

# Why a training ended (a cancellation raises TrainingCancelled instead): every planned
# epoch ran; early stopping on the validation score; or the next epoch would take more
# steps than the privacy budget was planned for.
StopReason = Literal["epochs", "early_stop", "budget"]

BatchLoss = Callable[[nn.Module, tuple], tuple[torch.Tensor, int]]
Validate = Callable[[nn.Module], tuple[float, float]]


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


def adam(module: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """The default optimiser: Adam over every parameter at ``train.learning_rate``."""
    return torch.optim.Adam(module.parameters(), lr=train.learning_rate)


@dataclass(frozen=True)
class LoopPlan:
    """What one training is: the family's part of :func:`run_loop`.

    ``build()`` returns the module to train (called once, right after seeding, then on
    the device); ``fresh()`` (default ``build``) returns the blank module the best weights
    are loaded into at the end. ``dataset`` holds one training example per row; batches
    of it (collated by ``collate_fn``) go to ``batch_loss(model, batch)``, which returns
    the batch's mean loss and its number of rows. ``validate(model)`` returns (the
    reported validation metric, a key to maximise) for the model being trained (possibly
    wrapped by Opacus: unwrap with :func:`ml_core.privacy.unwrap`).
    """

    build: Callable[[], nn.Module]
    dataset: Dataset
    batch_size: int
    batch_loss: BatchLoss
    validate: Validate
    train: TrainConfig
    privacy: PrivacyConfig | None
    stage: str
    device: torch.device
    fresh: Callable[[], nn.Module] | None = None
    collate_fn: Callable | None = None
    # The optimiser over the (prepared, on-device) module; default Adam at the learning rate.
    optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None
    # How the best weights are kept (default: a copy of the state_dict).
    snapshot: Callable[[nn.Module], dict] | None = None
    # The starting weights' key, computed on the wrapped module before the first epoch
    # (they stay the best until an epoch beats it); default: any epoch beats them.
    start_key: Callable[[nn.Module], float] | None = None
    # Checkpoints: the file (None: none), the data it is bound to, and further settings
    # that must match (a mapping, or computed from the prepared, unwrapped module).
    checkpoint_path: Path | None = None
    checkpoint_inputs: tuple = ()
    checkpoint_settings: Mapping | Callable[[nn.Module], Mapping] | None = None
    # One CPU thread for a small model (see cpu_threads_for).
    limit_threads: bool = True
    # bfloat16 autocast for the forward pass and loss on CUDA (ignored elsewhere).
    bf16_autocast: bool = False
    # False: no epoch is chosen (nor training stopped) by the validation score; every
    # epoch runs and the last one's weights are kept. Choosing by the validation rows is a
    # decision from private rows that DP-SGD's epsilon does not cover, so a released
    # private model is the plain output of its DP-SGD steps (the score is still reported).
    select_on_validation: bool = True

    @property
    def private(self) -> bool:
        return self.privacy is not None and self.privacy.enabled


@dataclass(frozen=True)
class LoopResult:
    """The outcome of :func:`run_loop`."""

    module: nn.Module  # ``fresh()`` holding the best epoch's weights, eval mode, CPU
    history: list[dict]  # per epoch: epoch, loss, val_metric, epsilon
    best_epoch: int
    epochs_run: int
    stop_reason: StopReason
    privacy: dict  # privacy.PrivateTraining.report() or privacy.disabled_report()
    device: str
    fixes: tuple[str, ...]  # "name: Old -> New" for each layer Opacus' validator replaced
    module_fixed: bool  # whether the validator had to fix the module at all

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason == "early_stop"

    @property
    def epsilon_remaining(self) -> float | None:
        """The part of the target epsilon this training did not spend (None: not private)."""
        if not self.privacy.get("enabled"):
            return None
        return max(0.0, float(self.privacy["target_epsilon"]) - float(self.privacy["epsilon"]))


def _validator_fixes(model: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    before = {name: type(module).__name__ for name, module in model.named_modules()}
    fixed = dp.prepare_module(model)
    after = {name: type(module).__name__ for name, module in fixed.named_modules()}
    fixes = tuple(
        f"{name}: {before[name]} -> {after[name]}" for name in before
        if name and name in after and before[name] != after[name]
    )
    return fixed, fixes


def _autocast(plan: LoopPlan) -> Callable[[], contextlib.AbstractContextManager]:
    if plan.bf16_autocast and plan.device.type == "cuda" and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


@dataclass(frozen=True)
class Started:
    """A plan's training pieces, as :func:`start` sets them up for the epochs: the module
    (Opacus-wrapped when private), its optimiser and loader (DP-SGD's and the Poisson
    loader when private), and the privacy wrapping itself (None when not private)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    wrapped: dp.PrivateTraining | None
    fixes: tuple[str, ...]  # "name: Old -> New" for each layer Opacus' validator replaced
    module_fixed: bool

    def privacy(self) -> dict:
        """The privacy spent so far (``disabled_report()`` when not private)."""
        return self.wrapped.report() if self.wrapped is not None else dp.disabled_report()


def start(plan: LoopPlan) -> Started:
    """Seed, build, and (when private) validate and wrap ``plan``'s module for DP-SGD:
    what :func:`run_loop` trains, and what the privacy-rule tests inspect."""
    seed_everything(plan.train.seed)
    model = plan.build()
    fixes: tuple[str, ...] = ()
    module_fixed = False
    if plan.private:
        fixed, fixes = _validator_fixes(model)
        module_fixed, model = fixed is not model, fixed
    model = model.to(plan.device)
    model.train()  # Opacus records no activations in eval mode.
    train = plan.train
    optimizer = (plan.optimizer or (lambda module: adam(module, train)))(model)
    loader = DataLoader(
        plan.dataset, batch_size=max(1, min(plan.batch_size, len(plan.dataset))), shuffle=True,
        generator=torch.Generator().manual_seed(train.seed), collate_fn=plan.collate_fn)
    wrapped: dp.PrivateTraining | None = None
    if plan.private:
        wrapped = dp.make_private(model=model, optimizer=optimizer, loader=loader,
                                  config=plan.privacy, epochs=train.epochs)
        model, optimizer, loader = wrapped.module, wrapped.optimizer, wrapped.loader
    return Started(model=model, optimizer=optimizer, loader=loader, wrapped=wrapped,
                   fixes=fixes, module_fixed=module_fixed)


def run_loop(
    plan: LoopPlan, *, progress: ProgressSink | None = None, should_stop: StopCheck | None = None,
) -> LoopResult:
    """Train ``plan`` (DP-SGD when ``plan.privacy`` is enabled) and return its best epoch.

    Seeded by ``plan.train.seed``: the same plan gives the same model on the same device.
    Raises :class:`TrainingCancelled`, carrying the privacy spent so far, as soon as
    ``should_stop()`` returns True (it is asked before every step). With
    ``plan.checkpoint_path`` a checkpoint is written every epoch, and one of the same
    inputs found there (an attempt that died) is resumed: the result equals an
    uninterrupted run's.
    """
    started = start(plan)
    limit = (cpu_threads_for(started.model, plan.device) if plan.limit_threads
             else contextlib.nullcontext())
    with limit:
        return _epochs(plan, started, progress=progress, should_stop=should_stop)


def _epochs(
    plan: LoopPlan, started: Started, *, progress: ProgressSink | None,
    should_stop: StopCheck | None,
) -> LoopResult:
    train = plan.train
    model, optimizer, loader, wrapped = (started.model, started.optimizer, started.loader,
                                         started.wrapped)
    privacy_so_far = started.privacy
    start_key = (-math.inf if plan.start_key is None or not plan.select_on_validation
                 else plan.start_key(model))
    log = EpochLog(model=model, stage=plan.stage, total_epochs=train.epochs,
                   patience=train.patience, progress=progress, snapshot=plan.snapshot,
                   start_key=start_key)
    settings = plan.checkpoint_settings or {}
    if callable(settings):
        settings = settings(dp.unwrap(model))
    checkpoint = EpochCheckpoint(
        plan.checkpoint_path, inputs=plan.checkpoint_inputs, train=train, stage=plan.stage,
        model=model, optimizer=optimizer, loader=loader, wrapped=wrapped, log=log, **settings)
    first_epoch, stopped_early = checkpoint.resume()
    reason: StopReason = "early_stop" if stopped_early else "epochs"
    for epoch in range(first_epoch, train.epochs + 1):
        if stopped_early:
            break
        if should_stop is not None and should_stop():
            raise TrainingCancelled(privacy=privacy_so_far())
        if wrapped is not None and wrapped.steps + len(loader) > wrapped.planned_steps:
            # The noise was set for planned_steps; one more epoch would spend beyond it.
            reason = "budget"
            break
        loss = run_epoch(model=model, loader=loader, optimizer=optimizer,
                         batch_loss=plan.batch_loss, autocast=_autocast(plan),
                         should_stop=should_stop, cancelled=privacy_so_far)
        val_metric, key = plan.validate(model)
        if not plan.select_on_validation:
            key = float(epoch)  # every epoch improves on the last: the last one is kept
        log.record(model=model, epoch=epoch, loss=loss, val_metric=val_metric, key=key,
                   epsilon=wrapped.epsilon() if wrapped is not None else None)
        stopped_early = log.patience_spent and epoch < train.epochs
        if stopped_early:
            reason = "early_stop"
        checkpoint.save(epoch, stopped_early=stopped_early)
    best = log.load_best((plan.fresh or plan.build)())
    if isinstance(model, fast_clipping.BookkeepingModule):
        model.cleanup()  # drop the records and the patched Linear forwards
    return LoopResult(module=best, history=log.history, best_epoch=log.best_epoch,
                      epochs_run=len(log.history), stop_reason=reason,
                      privacy=privacy_so_far(), device=str(plan.device), fixes=started.fixes,
                      module_fixed=started.module_fixed)


def run_epoch(
    *, model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
    batch_loss: BatchLoss, should_stop: StopCheck | None = None,
    cancelled: Callable[[], dict] = dp.disabled_report,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """One pass over ``loader``; returns the mean training loss over its rows (NaN when
    every batch was empty). ``should_stop`` is asked before every step but the first (the
    caller asks before the epoch); when it says stop, :class:`TrainingCancelled` is raised
    with ``cancelled()`` as the privacy spent."""
    model.train()
    total, count = 0.0, 0
    with warnings.catch_warnings():
        # Opacus' hooks on a first layer whose input needs no gradient: expected, harmless.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message=".*non-full backward hook.*")
        for index, batch in enumerate(loader):
            if should_stop is not None and index and should_stop():
                raise TrainingCancelled(privacy=cancelled())
            optimizer.zero_grad(set_to_none=True)
            # An empty Poisson batch still steps: Opacus adds pure noise and accounts the
            # step, as the DP analysis assumes (its NaN loss is not counted below).
            with autocast():
                loss, rows = batch_loss(model, batch)
            loss.backward()
            optimizer.step()
            if rows:
                total += float(loss.detach()) * rows
                count += rows
    return total / count if count else math.nan
