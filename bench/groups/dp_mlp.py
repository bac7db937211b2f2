"""DP-SGD step cost on the tabular MLP 64 -> 256 -> 256 -> 1, batch 1024.

The same model weights, data and plain SGD for every variant: non-private; Tessera's
book-keeping path (:mod:`ml_core.fast_clipping`); Opacus' default per-sample hooks; Opacus'
ghost clipping. A "step" is zero_grad + forward + loss + backward + optimizer.step.

Robust on a shared machine: one torch thread (``SINGLE_THREAD``), one step per variant
per round in alternating order (A B, B A, ...), and the ratio is the median over many
rounds of the ratio within each round, so a busy spell slows both sides of a ratio; on
the CPU each step is timed by the thread's CPU time (``bench.timing.step_clock``).
"""

from __future__ import annotations

import copy
import gc
import warnings
from collections.abc import Callable

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.memory import peak_bytes
from bench.registry import Result, Settings, Target
from bench.timing import interleaved, median, round_ratio, step_clock, synchronizer, torch_threads
from ml_core import fast_clipping

NAMES = (
    "dp_step_ratio_mlp", "opacus_hooks_ratio_mlp", "opacus_ghost_ratio_mlp",
    "dp_memory_ratio_mlp",
)
DEVICES = ("cpu", "cuda")

WIDTHS = (64, 256, 256, 1)
NOISE_MULTIPLIER = 1.0
MAX_GRAD_NORM = 1.0
DATASET_ROWS = 65_536  # only sets Opacus' sample rate / expected batch size
SINGLE_THREAD = 1


def sizes(settings: Settings) -> dict:
    # rounds: plain and fast; ghost_rounds, slow_rounds: Opacus' ghost and hooks modes.
    if settings.tiny:
        return {"batch": 32, "rounds": 2, "ghost_rounds": 2, "slow_rounds": 1}
    if settings.quick:
        return {"batch": 1024, "rounds": 100, "ghost_rounds": 15, "slow_rounds": 2}
    return {"batch": 1024, "rounds": 600, "ghost_rounds": 60, "slow_rounds": 8}


def build_mlp(widths: tuple[int, ...] = WIDTHS) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), targets)


class Variant:
    """One way of taking a training step, with what memory accounting needs."""

    def __init__(self, *, model: nn.Module, optimizer, step: Callable[[], None]) -> None:
        self.model = model
        self.optimizer = optimizer
        self.step = step

    def resident(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        tensors = [x, y, *self.model.parameters()]
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
        return tensors


def make_variant(kind: str, *, base: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 device: str, batch: int) -> Variant:
    model = copy.deepcopy(base).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loader = DataLoader(
        TensorDataset(torch.zeros(DATASET_ROWS, 1), torch.zeros(DATASET_ROWS)), batch_size=batch
    )
    common = dict(optimizer=optimizer, data_loader=loader, noise_multiplier=NOISE_MULTIPLIER,
                  max_grad_norm=MAX_GRAD_NORM, poisson_sampling=True, loss_reduction="mean")
    criterion = _loss
    if kind == "plain":
        module, dp_optimizer = model, optimizer
    elif kind == "fast":
        module, dp_optimizer, _, decision = fast_clipping.make_private_fast(
            PrivacyEngine(), module=model, **common
        )
        if not decision.fast_path:
            raise RuntimeError(decision.reason)
    elif kind == "hooks":
        module, dp_optimizer, _ = PrivacyEngine().make_private(module=model, **common)
    elif kind == "ghost":
        # Opacus 1.6: ghost mode returns a criterion wrapper whose backward runs the two
        # passes of ghost clipping; the loss must be a mean-reducing nn.Module.
        module, dp_optimizer, criterion_module, _ = PrivacyEngine().make_private(
            module=model, criterion=nn.BCEWithLogitsLoss(), grad_sample_mode="ghost", **common
        )

        def criterion(logits, targets):  # noqa: ANN001, ANN202
            return criterion_module(logits.squeeze(-1), targets)
    else:
        raise ValueError(kind)

    def step() -> None:
        dp_optimizer.zero_grad(set_to_none=True)
        criterion(module(x), y).backward()
        dp_optimizer.step()

    return Variant(model=module, optimizer=dp_optimizer, step=step)


def _data(batch: int, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, WIDTHS[0], generator=gen)
    y = torch.randint(0, 2, (batch,), generator=gen).float()
    return x.to(device), y.to(device)


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    device, suffix = settings.device, settings.suffix
    torch.manual_seed(settings.seed)
    base = build_mlp()
    x, y = _data(s["batch"], device, settings.seed)
    sync = synchronizer(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        variants = {kind: make_variant(kind, base=base, x=x, y=y, device=device, batch=s["batch"])
                    for kind in ("plain", "fast", "hooks", "ghost")}
        with torch_threads(SINGLE_THREAD, device) as threads:
            times = interleaved(
                {kind: v.step for kind, v in variants.items()}, rounds=s["rounds"], inner=1,
                rounds_for={"hooks": s["slow_rounds"], "ghost": s["ghost_rounds"]}, sync=sync,
                warmup=3, clock=step_clock(device, threads),
            )
        peaks = {}
        for kind in ("plain", "fast", "ghost", "hooks"):
            variant = variants.pop(kind)
            variant.step()
            peaks[kind] = peak_bytes(variant.step, device=device,
                                     resident=variant.resident(x, y))
            del variant
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

    ms = {kind: median(values) * 1e3 for kind, values in times.items()}
    reference = f"non-private step, same model and data (median {ms['plain']:.3g} ms)"
    common = {"batch": s["batch"], "rounds": s["rounds"], "median_ms": ms,
              "device": device, "threads": threads,
              "fast_vs_plain_of_medians": ms["fast"] / ms["plain"]}
    mb = {kind: peak / 2**20 for kind, peak in peaks.items()}
    return [
        # The published book-keeping cost is about 1.03 (Bu et al. 2023): issue 12's bound.
        Result(f"dp_step_ratio_mlp{suffix}", round_ratio(times, "fast", "plain"), "x",
               reference, Target(high=1.15), details=common),
        Result(f"opacus_hooks_ratio_mlp{suffix}", round_ratio(times, "hooks", "plain"), "x",
               reference, Target(), details=common),
        Result(f"opacus_ghost_ratio_mlp{suffix}", round_ratio(times, "ghost", "plain"), "x",
               reference, Target(), details=common),
        Result(f"dp_memory_ratio_mlp{suffix}", peaks["fast"] / peaks["plain"], "x",
               f"non-private step peak tensor memory ({mb['plain']:.3g} MiB)",
               Target(high=1.3), details={"peak_mib": mb, "method": "bench.memory.peak_bytes"}),
    ]
