"""DP-SGD step cost on the tabular MLP 64 -> 256 -> 256 -> 1, batch 1024.

The same model weights, data and plain SGD for every variant: non-private; Tessera's
book-keeping path (:mod:`ml_core.fast_clipping`); Opacus' default per-sample hooks; Opacus'
ghost clipping. A "step" is zero_grad + forward + loss + backward + optimizer.step.
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
from bench.timing import interleaved, median, round_ratio, synchronizer
from ml_core import fast_clipping

NAMES = (
    "dp_step_ratio_mlp", "opacus_hooks_ratio_mlp", "opacus_ghost_ratio_mlp",
    "dp_memory_ratio_mlp", "dp_clip_max_rel_error",
)
DEVICES = ("cpu", "cuda")

WIDTHS = (64, 256, 256, 1)
NOISE_MULTIPLIER = 1.0
MAX_GRAD_NORM = 1.0
DATASET_ROWS = 65_536  # only sets Opacus' sample rate / expected batch size


def sizes(settings: Settings) -> dict:
    if settings.tiny:
        return {"batch": 32, "rounds": 2, "slow_rounds": 1, "inner": 1, "slow_inner": 1}
    if settings.quick:
        return {"batch": 1024, "rounds": 9, "slow_rounds": 3, "inner": 5, "slow_inner": 1}
    return {"batch": 1024, "rounds": 21, "slow_rounds": 5, "inner": 10, "slow_inner": 2}


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


def clip_error(*, base: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Worst relative error of the fast clipped sum vs Opacus' per-sample reference, with a
    clipping bound at the median per-sample norm (half the samples clipped)."""
    wrapped = fast_clipping.BookkeepingModule(copy.deepcopy(base))
    _loss(wrapped(x), y).backward()
    _, norms = wrapped.clipped_sum(max_grad_norm=1e30)
    bound = float(norms.median())
    kwargs = dict(model=base, loss_fn=_loss, inputs=x, targets=y, max_grad_norm=bound)
    fast = fast_clipping.fast_clipped_sum(**kwargs)
    reference = fast_clipping.reference_clipped_sum(**kwargs)
    return fast_clipping.max_relative_error(fast, reference), bound


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
        times = interleaved(
            {kind: v.step for kind, v in variants.items()}, rounds=s["rounds"],
            inner={"plain": s["inner"], "fast": s["inner"], "hooks": s["slow_inner"],
                   "ghost": s["inner"]},
            rounds_for={"hooks": s["slow_rounds"]}, sync=sync,
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
        error, bound = clip_error(base=base.to(device), x=x, y=y)

    ms = {kind: median(values) * 1e3 for kind, values in times.items()}
    reference = f"non-private step, same model and data (median {ms['plain']:.3g} ms)"
    common = {"batch": s["batch"], "rounds": s["rounds"], "median_ms": ms,
              "device": device, "threads": torch.get_num_threads()}
    mb = {kind: peak / 2**20 for kind, peak in peaks.items()}
    return [
        Result(f"dp_step_ratio_mlp{suffix}", round_ratio(times, "fast", "plain"), "x",
               reference, Target(high=1.5), details=common),
        Result(f"opacus_hooks_ratio_mlp{suffix}", round_ratio(times, "hooks", "plain"), "x",
               reference, Target(), details=common),
        Result(f"opacus_ghost_ratio_mlp{suffix}", round_ratio(times, "ghost", "plain"), "x",
               reference, Target(), details=common),
        Result(f"dp_memory_ratio_mlp{suffix}", peaks["fast"] / peaks["plain"], "x",
               f"non-private step peak tensor memory ({mb['plain']:.3g} MiB)",
               Target(high=1.3), details={"peak_mib": mb, "method": "bench.memory.peak_bytes"}),
        Result(f"dp_clip_max_rel_error{suffix}", error, "relative",
               "Opacus per-sample gradients clipped one by one and summed",
               Target(high=1e-5), details={"max_grad_norm": bound, "batch": s["batch"]}),
    ]
