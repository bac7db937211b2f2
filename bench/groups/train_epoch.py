"""How one private training epoch of the product scales with the number of rows.

Uses the product's own pieces (``ml_core.trainer.make_loader``, ``ml_core.privacy``'s
wrapping, ``ml_core.training_loop.run_epoch`` with the trainer's batch loss) on the
tabular MLP with the default training configuration, so whatever path the trainer takes
(fast or Opacus) is what is measured.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from bench.registry import Result, Settings, Target
from bench.timing import loglog_slope, median, repeated, synchronizer, torch_threads
from ml_core import privacy as dp
from ml_core.models import TabularMLP
from ml_core.spec import PrivacyConfig, TrainConfig
from ml_core.trainer import make_loader, tabular_batch_loss
from ml_core.training_loop import run_epoch

NAMES = ("scaling_slope_train_epoch",)
DEVICES = ("cpu", "cuda")
N_FEATURES = 30


def sizes(settings: Settings) -> dict:
    if settings.tiny:
        return {"rows": (500, 2_000), "repeats": 1}
    if settings.quick:
        return {"rows": (2_000, 8_000, 32_000), "repeats": 2}
    return {"rows": (16_000, 64_000, 256_000), "repeats": 3}


def _epoch_seconds(rows: int, *, settings: Settings, repeats: int) -> tuple[float, dict]:
    train = TrainConfig()
    rng = np.random.default_rng(settings.seed + rows)
    x = rng.standard_normal((rows, N_FEATURES)).astype(np.float32)
    y = (x[:, 0] + rng.standard_normal(rows) > 0).astype(np.float32)
    torch.manual_seed(settings.seed)
    device = torch.device(settings.device)
    model = dp.prepare_module(TabularMLP(N_FEATURES, train.hidden_sizes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.learning_rate)
    loader = make_loader(x, y, batch_size=train.batch_size, seed=train.seed)
    wrapped = dp.make_private(model=model, optimizer=optimizer, loader=loader,
                              config=PrivacyConfig(), epochs=max(1, repeats + 1))
    batch_loss = tabular_batch_loss(nn.BCEWithLogitsLoss(), device)

    def epoch() -> None:
        run_epoch(model=wrapped.module, loader=wrapped.loader, optimizer=wrapped.optimizer,
                  batch_loss=batch_loss)

    seconds, _ = repeated(epoch, repeats=repeats, warmup=False, sync=synchronizer(settings.device))
    path = type(wrapped.module).__name__
    return median(seconds), {"module": path, "steps": len(wrapped.loader)}


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    seconds, paths = [], []
    # One torch thread, as in the step ratios: on a shared machine two threads mostly wait.
    with warnings.catch_warnings(), torch_threads(1, settings.device) as threads:
        warnings.simplefilter("ignore")
        # Warm-up: lazy initialisation (kernels, Opacus hooks) must not land on the smallest
        # size, where it would flatten the slope.
        _epoch_seconds(s["rows"][0], settings=settings, repeats=1)
        for rows in s["rows"]:
            value, info = _epoch_seconds(rows, settings=settings, repeats=s["repeats"])
            seconds.append(value)
            paths.append(info)
    slope = loglog_slope(list(s["rows"]), seconds)
    return [
        Result(f"scaling_slope_train_epoch{settings.suffix}", slope, "log-log slope",
               "one private epoch at " + ", ".join(f"{n:,}" for n in s["rows"]) + " rows: "
               + ", ".join(f"{t:.3g} s" for t in seconds),
               Target(low=0.9, high=1.1),
               details={"rows": list(s["rows"]), "seconds": seconds, "runs": paths,
                        "threads": threads}),
    ]
