"""Progress reports between epochs: the stage a run is in."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

from torch import nn

from ml_core import cancellation
from ml_core.privacy import unwrap
from ml_core.spec import ProgressSink


def report_stage(progress: ProgressSink | None, stage: str, total_epochs: int) -> None:
    """Tell ``progress`` (if any) that a run entered ``stage`` (preparing, baseline, ...);
    a cancel is honoured here first (:func:`ml_core.cancellation.check`)."""
    cancellation.check()
    if progress is not None:
        progress(stage=stage, epoch=0, total_epochs=total_epochs, loss=None, val_metric=None,
                 epsilon=None)


def plain_float(value: float | None) -> float | None:
    """A JSON-ready float: None for missing or NaN."""
    return None if value is None or math.isnan(value) else float(value)


def _state_copy(module: nn.Module) -> dict:
    return copy.deepcopy(module.state_dict())


class EpochLog:
    """One training loop's history, progress reports, best weights and early stopping.

    ``record`` is called once per epoch with the validation ``key`` (larger is better);
    the weights of the best epoch are kept, unwrapped from Opacus' module, as ``snapshot``
    takes them (default: a copy of the module's ``state_dict``). The starting weights are
    the best until an epoch beats ``start_key`` (default: any epoch does).
    """

    def __init__(
        self, *, model: nn.Module, stage: str, total_epochs: int, patience: int,
        progress: ProgressSink | None,
        snapshot: Callable[[nn.Module], dict] | None = None, start_key: float = -math.inf,
    ) -> None:
        self.stage, self.total_epochs, self.patience = stage, total_epochs, patience
        self.progress = progress
        self.snapshot = snapshot or _state_copy
        self.history: list[dict] = []
        self.best_state = self.snapshot(unwrap(model))
        self.best_key, self.best_epoch, self.epochs_without_gain = start_key, 0, 0

    def record(
        self, *, model: nn.Module, epoch: int, loss: float, val_metric: float, key: float,
        epsilon: float | None,
    ) -> None:
        entry = {"epoch": epoch, "loss": plain_float(loss), "val_metric": plain_float(val_metric),
                 "epsilon": epsilon}
        self.history.append(entry)
        if self.progress is not None:
            self.progress(stage=self.stage, epoch=epoch, total_epochs=self.total_epochs,
                          loss=entry["loss"], val_metric=entry["val_metric"], epsilon=epsilon)
        if key > self.best_key:
            self.best_key, self.best_epoch, self.epochs_without_gain = key, epoch, 0
            self.best_state = self.snapshot(unwrap(model))
        else:
            self.epochs_without_gain += 1

    def state_dict(self) -> dict:
        """What a resumed training needs to continue this log (for a checkpoint)."""
        return {"history": list(self.history), "best_state": self.best_state,
                "best_key": self.best_key, "best_epoch": self.best_epoch,
                "epochs_without_gain": self.epochs_without_gain}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`; the epochs before are not reported again."""
        self.history = list(state["history"])
        self.best_state = dict(state["best_state"])
        self.best_key, self.best_epoch = float(state["best_key"]), int(state["best_epoch"])
        self.epochs_without_gain = int(state["epochs_without_gain"])

    @property
    def patience_spent(self) -> bool:
        return self.epochs_without_gain >= self.patience

    def load_best(self, fresh: nn.Module) -> nn.Module:
        """``fresh`` (same architecture) with the best epoch's weights, on the CPU, in eval mode."""
        fresh.load_state_dict({key: value.cpu() for key, value in self.best_state.items()})
        return fresh.eval()
