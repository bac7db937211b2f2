"""Per-epoch checkpoints: a training interrupted between two epochs (a worker killed, a
database outage) resumes from its last epoch and ends exactly as an uninterrupted one.

One file per training stage (``<checkpoint_dir>/<stage>.pt``), written atomically after
every epoch. It holds everything the remaining epochs depend on, so they take the same
steps (same batches, same noise): the weights, the optimiser, the privacy accountant's
history (restored, never re-run: a resumed private run is charged exactly its planned
steps), the :class:`~ml_core.progress.EpochLog` (history, best weights, early stopping)
and every random generator (Python, NumPy, torch CPU and CUDA, and the loader's: its
shuffling generator, or under DP the Poisson sampler's, :mod:`ml_core.sampling`).

A checkpoint also carries a signature of its inputs (data, schedule, privacy); a file of
other inputs is ignored, not misread. The one training loop
(:func:`ml_core.training_loop.run_loop`, which every family trains through) writes and
resumes them with :class:`EpochCheckpoint`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ml_core import privacy as dp
from ml_core.progress import EpochLog
from ml_core.sampling import PoissonBatchSampler
from ml_core.spec import TrainConfig

logger = logging.getLogger(__name__)

# Bump when the checkpoint's content changes: an older file is then ignored, not misread.
# 3: private runs' loader state is the Poisson sampler's generator (ml_core.sampling).
CHECKPOINT_FORMAT = 3


def checkpoint_path(directory: Path | None, stage: str) -> Path | None:
    """The checkpoint file of ``stage`` in ``directory`` (None: no checkpoints)."""
    return None if directory is None else Path(directory) / f"{stage}.pt"


def loader_generators(loader: DataLoader) -> list[torch.Generator | PoissonBatchSampler]:
    """The generators a loader draws from, each with ``get_state``/``set_state``: the torch
    generators (the shuffled loader's own seeded one) and, under DP, the Poisson sampler
    (:mod:`ml_core.sampling`, its own NumPy generator)."""
    found: list[torch.Generator | PoissonBatchSampler] = []
    batch_sampler = getattr(loader, "batch_sampler", None)
    for owner in (loader, getattr(loader, "sampler", None), batch_sampler):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    if isinstance(batch_sampler, PoissonBatchSampler):
        found.append(batch_sampler)
    return found


def rng_state(loader: DataLoader) -> dict:
    """Python, NumPy, torch (CPU and CUDA) and the loader's generator states, loadable with
    ``torch.load(weights_only=True)``."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": [generator.get_state() for generator in loader_generators(loader)],
    }


def set_rng_state(state: dict, loader: DataLoader) -> None:
    """Undo :func:`rng_state`: every generator continues where the checkpoint left it."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generators = loader_generators(loader)
    if len(generators) != len(state["loader"]):
        raise ValueError("the checkpoint's loader has a different set of generators")
    for generator, saved in zip(generators, state["loader"], strict=True):
        generator.set_state(saved)


def inputs_sha256(arrays: Iterable[np.ndarray | torch.Tensor | None]) -> str:
    """One digest of the arrays' bytes, in order (None skipped)."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            continue
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        array = np.asarray(array)
        if array.dtype == object:
            # An object array's bytes are pointers, new in every process: hash its values.
            for value in array.reshape(-1):
                digest.update(repr(value).encode())
                digest.update(b"\x1f")
            continue
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def training_signature(*, inputs: Iterable[np.ndarray | torch.Tensor | None],
                       train: TrainConfig, stage: str, wrapped: dp.PrivateTraining | None,
                       **settings) -> dict:
    """What a checkpoint must match to be resumed: the same data (``inputs``), schedule,
    privacy and loop ``settings`` (plain values, e.g. a weight decay)."""
    config = {name: list(value) if isinstance(value, tuple) else value
              for name, value in dataclasses.asdict(train).items()}
    return {
        "format": CHECKPOINT_FORMAT, "stage": stage, "data_sha256": inputs_sha256(inputs),
        "train": config, "private": wrapped is not None,
        "noise_multiplier": wrapped.noise_multiplier if wrapped is not None else None,
        "sample_rate": wrapped.sample_rate if wrapped is not None else None,
        "max_grad_norm": wrapped.max_grad_norm if wrapped is not None else None,
        **settings,
    }


def save_checkpoint(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    epoch: int, history: list[dict], **state) -> None:
    """Per-epoch file checkpoint, written atomically (a crash leaves the previous one).

    ``state`` holds the rest a resume needs (:meth:`EpochCheckpoint.save` writes the RNG
    states, the early stopping state, the accountant's history and a signature).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(
        {"model": dp.unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
         "epoch": epoch, "history": history, **state},
        partial,
    )
    partial.replace(path)


def load_checkpoint(path: Path | None, *, signature: dict | None = None) -> dict | None:
    """The checkpoint at ``path`` when it exists and matches ``signature``, else None."""
    if path is None or not Path(path).exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable (older format, torn disk): start afresh
        logger.warning("checkpoint %s is unreadable; training from the start", path,
                       exc_info=True)
        return None
    if signature is not None and checkpoint.get("signature") != signature:
        logger.warning("checkpoint %s belongs to other inputs; training from the start", path)
        return None
    return checkpoint


def checkpoint_epochs(directory: Path) -> dict[str, int]:
    """Stage -> last checkpointed epoch of each checkpoint in ``directory`` (for logs)."""
    epochs = {}
    for path in sorted(Path(directory).glob("*.pt")):
        checkpoint = load_checkpoint(path)
        if checkpoint is not None and "signature" in checkpoint:
            epochs[checkpoint["signature"]["stage"]] = int(checkpoint["epoch"])
    return epochs


class EpochCheckpoint:
    """The checkpoint of one training loop at ``path`` (None: none is read or written).

    Built once the model, optimiser and loader are final (wrapped for DP-SGD when private):

        checkpoint = EpochCheckpoint(path, inputs=..., train=..., stage=..., model=model,
                                     optimizer=optimizer, loader=loader, wrapped=wrapped,
                                     log=log)
        first_epoch, stopped_early = checkpoint.resume()
        for epoch in range(first_epoch, train.epochs + 1):
            if stopped_early:
                break
            ...  # one epoch, then log.record(...)
            stopped_early = ...
            checkpoint.save(epoch, stopped_early=stopped_early)
    """

    def __init__(
        self, path: Path | None, *, inputs: Iterable[np.ndarray | torch.Tensor | None],
        train: TrainConfig, stage: str, model: nn.Module, optimizer: torch.optim.Optimizer,
        loader: DataLoader, wrapped: dp.PrivateTraining | None, log: EpochLog, **settings,
    ) -> None:
        self.path = None if path is None else Path(path)
        self.stage = stage
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.wrapped, self.log = wrapped, log
        self.signature = (None if self.path is None else
                          training_signature(inputs=inputs, train=train, stage=stage,
                                             wrapped=wrapped, **settings))

    def resume(self) -> tuple[int, bool]:
        """Restore the last checkpoint, if one of these inputs exists: (the first epoch to
        run, whether early stopping had ended the training). (1, False) without one."""
        checkpoint = load_checkpoint(self.path, signature=self.signature)
        if checkpoint is None:
            return 1, False
        dp.unwrap(self.model).load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.wrapped is not None:
            # The steps already taken, as accounted: not taken nor counted again.
            self.wrapped.engine.accountant.history = [
                tuple(entry) for entry in checkpoint["accountant_history"]]
        self.log.load_state_dict(checkpoint["epoch_log"])
        set_rng_state(checkpoint["rng"], self.loader)
        epoch = int(checkpoint["epoch"])
        logger.info("%s: resumed from the checkpoint of epoch %d", self.stage, epoch)
        return epoch + 1, bool(checkpoint["stopped_early"])

    def save(self, epoch: int, *, stopped_early: bool) -> None:
        """Checkpoint the end of ``epoch`` (after ``log.record``); nothing without a path."""
        if self.path is None:
            return
        save_checkpoint(
            self.path, model=self.model, optimizer=self.optimizer, epoch=epoch,
            history=self.log.history, signature=self.signature, stopped_early=stopped_early,
            epoch_log=self.log.state_dict(), rng=rng_state(self.loader),
            accountant_history=(list(self.wrapped.engine.accountant.history)
                                if self.wrapped is not None else []),
        )
