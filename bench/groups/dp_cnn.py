"""DP-SGD step cost of the image family (EfficientNet-Lite0 transfer learning), batch 64 at
224 x 224 pixels.

The same trainable layers private and not, as the family fine-tunes them
(:func:`ml_core.families.image.backbone.pretrained_top` with the family's
``TRAINABLE_BLOCKS``): the last MBConv block's 1x1 convolutions, the head's 1x1 convolution
(BatchNorm folded, frozen statistics) and the classifier, Adam as the family's loop uses.
Private = Tessera's book-keeping path (:mod:`ml_core.fast_clipping`). Two entries:

* ``dp_step_ratio_cnn``: a step from pixels: the frozen network's forward up to the first
  trainable block (no gradient), then forward, loss, backward, clipping and optimiser step
  through the trainable part. What a run without cached activations would pay per step.
* ``dp_step_ratio_cnn_top``: the same step from cached activations at the first trainable
  block, which is what the family's training loop takes (they are computed once per run):
  it isolates the clipping's own cost.

Medians over interleaved rounds of the ratio within each round (see ``bench.timing``).
"""

from __future__ import annotations

import warnings

import torch
from opacus import PrivacyEngine
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from bench.registry import Result, Settings, Target
from bench.timing import interleaved, median, round_ratio, synchronizer, torch_threads
from ml_core import fast_clipping
from ml_core.families.image.backbone import (
    Trunk,
    first_trainable,
    load_backbone,
    pretrained_top,
)
from ml_core.families.image.family import TRAINABLE_BLOCKS

NAMES = ("dp_step_ratio_cnn", "dp_step_ratio_cnn_top")
DEVICES = ("cpu", "cuda")
N_CLASSES = 6
NOISE_MULTIPLIER = 1.0
MAX_GRAD_NORM = 1.0
DATASET_ROWS = 1_800  # only sets the expected batch size (the NEU set's size)
THREADS = 2


def sizes(settings: Settings) -> dict:
    if settings.tiny:
        return {"batch": 4, "pixels": 64, "rounds": 1, "top_rounds": 2}
    if settings.quick:
        return {"batch": 64, "pixels": 224, "rounds": 3, "top_rounds": 10}
    return {"batch": 64, "pixels": 224, "rounds": 8, "top_rounds": 30}


def _step(*, trunk: Trunk | None, private: bool, batch: int, device: str, seed: int,
          x: torch.Tensor, y: torch.Tensor, backbone, upto: int):
    top = pretrained_top(backbone, n_classes=N_CLASSES, seed=seed,
                         trainable_blocks=TRAINABLE_BLOCKS).to(device)
    with torch.no_grad():  # as after a few steps: every trainable layer gets a gradient
        top.classifier.weight.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam([p for p in top.parameters() if p.requires_grad], lr=1e-3)
    module = top
    if private:
        loader = DataLoader(TensorDataset(torch.zeros(DATASET_ROWS, 1)), batch_size=batch)
        module, optimizer, _, decision = fast_clipping.make_private_fast(
            PrivacyEngine(), module=top, optimizer=optimizer, data_loader=loader,
            noise_multiplier=NOISE_MULTIPLIER, max_grad_norm=MAX_GRAD_NORM,
            poisson_sampling=True, loss_reduction="mean")
        if not decision.fast_path:
            raise RuntimeError(decision.reason)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if trunk is not None:
            with torch.no_grad():
                features = trunk(x, upto)
        else:
            features = x
        F.cross_entropy(module(features), y).backward()
        optimizer.step()

    return step


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    device, suffix = settings.device, settings.suffix
    torch.manual_seed(settings.seed)
    backbone = load_backbone(pretrained=True)
    trunk = Trunk(backbone).to(device)
    gen = torch.Generator().manual_seed(settings.seed)
    images = torch.randn(s["batch"], 3, s["pixels"], s["pixels"], generator=gen).to(device)
    labels = torch.randint(0, N_CLASSES, (s["batch"],), generator=gen).to(device)
    upto = first_trainable(backbone, TRAINABLE_BLOCKS)
    with torch.no_grad():
        cached = trunk(images, upto)
    sync = synchronizer(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        common = {"batch": s["batch"], "device": device, "seed": settings.seed,
                  "y": labels, "backbone": backbone, "upto": upto}
        with torch_threads(THREADS, device) as threads:
            full = interleaved({
                "plain": _step(trunk=trunk, private=False, x=images, **common),
                "fast": _step(trunk=trunk, private=True, x=images, **common),
            }, rounds=s["rounds"], inner=1, sync=sync, warmup=1)
            top = interleaved({
                "plain": _step(trunk=None, private=False, x=cached, **common),
                "fast": _step(trunk=None, private=True, x=cached, **common),
            }, rounds=s["top_rounds"], inner=1, sync=sync, warmup=2)
    trainable = [name for name, p in pretrained_top(
        backbone, n_classes=N_CLASSES, seed=0, trainable_blocks=TRAINABLE_BLOCKS
    ).named_parameters() if p.requires_grad]
    ms = {kind: median(values) * 1e3 for kind, values in full.items()}
    top_ms = {kind: median(values) * 1e3 for kind, values in top.items()}
    details = {"batch": s["batch"], "pixels": s["pixels"], "rounds": s["rounds"],
               "device": device, "threads": threads, "median_ms": ms, "top_median_ms": top_ms,
               "trainable_blocks": TRAINABLE_BLOCKS, "trainable": trainable}
    return [
        Result(f"dp_step_ratio_cnn{suffix}", round_ratio(full, "fast", "plain"), "x",
               f"non-private step from pixels, same trainable layers (median "
               f"{ms['plain']:.4g} ms)", Target(high=1.5), details=details),
        Result(f"dp_step_ratio_cnn_top{suffix}", round_ratio(top, "fast", "plain"), "x",
               f"non-private step from cached activations (median {top_ms['plain']:.4g} ms)",
               Target(high=1.5), details=details),
    ]
