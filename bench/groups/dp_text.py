"""DP-SGD step cost fine-tuning the text encoder: sequence 64, batch 32.

The text family's trainable part (all-MiniLM-L6-v2's last transformer layer, mean pooling,
dropout and a linear head; LayerNorms frozen) as
:func:`ml_core.models.text_encoder.build_classifier` builds it, prepared and optimised the
way the family trains it (``privacy.prepare_module``, Adam over the trainable parameters,
cross-entropy). Its input is the frozen lower layers' output for random token ids with
varied lengths (the family caches those states, so a training step starts from them).
Variants: non-private; :func:`ml_core.fast_clipping.make_private_fast` (the product's
private path: its Linear layers over sequences are clipped with the Gram form of the
ghost norm); Opacus' per-sample hooks for comparison. Timing as in
:mod:`bench.groups.dp_mlp`: one torch thread, alternating single steps, median of the
within-round ratios.
"""

from __future__ import annotations

import copy
import warnings

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.groups.clip_error import text_case
from bench.registry import Result, Settings, Target
from bench.timing import interleaved, median, round_ratio, step_clock, synchronizer, torch_threads
from ml_core import fast_clipping
from ml_core import privacy as dp

NAMES = ("dp_step_ratio_text", "opacus_hooks_ratio_text")
DEVICES = ("cpu", "cuda")
BATCH, SEQUENCE = 32, 64
DATASET_ROWS = 8_192  # only sets the sample rate / expected batch size
NOISE_MULTIPLIER, MAX_GRAD_NORM = 1.0, 1.0
SINGLE_THREAD = 1


def sizes(settings: Settings) -> dict:
    if settings.tiny:
        return {"batch": 4, "sequence": 16, "encoder": "tiny", "rounds": 2, "slow_rounds": 1}
    if settings.quick:
        return {"batch": BATCH, "sequence": SEQUENCE, "encoder": "pretrained", "rounds": 7,
                "slow_rounds": 2}
    return {"batch": BATCH, "sequence": SEQUENCE, "encoder": "pretrained", "rounds": 25,
            "slow_rounds": 4}


def _variant(kind: str, *, top: nn.Module, inputs, labels, batch: int):  # noqa: ANN001, ANN202
    module = dp.prepare_module(copy.deepcopy(top)).train()
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    loader = DataLoader(TensorDataset(torch.zeros(DATASET_ROWS, 1)), batch_size=batch)
    common = dict(optimizer=optimizer, data_loader=loader, noise_multiplier=NOISE_MULTIPLIER,
                  max_grad_norm=MAX_GRAD_NORM, poisson_sampling=True, loss_reduction="mean")
    decision = None
    if kind == "fast":
        module, optimizer, _, decision = fast_clipping.make_private_fast(
            PrivacyEngine(), module=module, **common)
        if not decision.fast_path:
            raise RuntimeError(decision.reason)
    elif kind == "hooks":
        module, optimizer, _ = PrivacyEngine().make_private(module=module, **common)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(module(*inputs), labels).backward()
        optimizer.step()

    return step, decision


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    device, suffix = settings.device, settings.suffix
    top, inputs, labels = text_case(encoder=s["encoder"], batch=s["batch"],
                                    sequence=s["sequence"], device=device, seed=settings.seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message=".*backward hook.*")
        steps, decisions = {}, {}
        for kind in ("plain", "fast", "hooks"):
            steps[kind], decisions[kind] = _variant(kind, top=top, inputs=inputs,
                                                    labels=labels, batch=s["batch"])
        with torch_threads(SINGLE_THREAD, device) as threads:
            times = interleaved(steps, rounds=s["rounds"], inner=1, warmup=1,
                                rounds_for={"hooks": s["slow_rounds"]},
                                sync=synchronizer(device), clock=step_clock(device, threads))
    ms = {kind: median(values) * 1e3 for kind, values in times.items()}
    reference = (f"non-private step of the same layers and batch (median {ms['plain']:.3g} ms)")
    details = {"batch": s["batch"], "sequence": s["sequence"], "encoder": s["encoder"],
               "rounds": s["rounds"], "median_ms": ms, "threads": threads, "device": device,
               "fast_path": decisions["fast"].to_dict()}
    target = Target(high=1.3) if device.startswith("cuda") else Target(high=1.5)
    return [
        Result(f"dp_step_ratio_text{suffix}", round_ratio(times, "fast", "plain"), "x",
               reference, target, details=details),
        Result(f"opacus_hooks_ratio_text{suffix}", round_ratio(times, "hooks", "plain"), "x",
               reference, Target(), details=details),
    ]
