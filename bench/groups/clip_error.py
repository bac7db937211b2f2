"""Correctness of the fast private path: its clipped gradient sum against Opacus'.

Two models: the tabular MLP of :mod:`bench.groups.dp_mlp` (2-D Linear layers), and the
text family's trainable top (MiniLM's last transformer layer + head, LayerNorms frozen,
as :func:`ml_core.models.text_encoder.build_classifier` builds it), whose Linear layers see
(batch, sequence, width) inputs and are clipped with the Gram form of the ghost norm. The
reference is Opacus' per-sample gradients (hooks mode), clipped one by one with Opacus'
formula and summed. The clipping bound is the median per-sample norm, so about half of
the samples are clipped. Dropout stays on: both passes draw the same masks.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from bench.groups import dp_mlp
from bench.registry import Result, Settings, Target
from ml_core import fast_clipping

NAMES = ("dp_clip_max_rel_error",)
DEVICES = ("cpu", "cuda")
SEED = 1234


def sizes(settings: Settings) -> dict:
    if settings.tiny:
        return {"mlp_batch": 32, "text_batch": 4, "sequence": 16, "encoder": "tiny"}
    return {"mlp_batch": 1024, "text_batch": 16, "sequence": 64, "encoder": "pretrained"}


def _seeded(fn, **kwargs):  # noqa: ANN001, ANN202
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return fn(**kwargs)


def relative_error(*, model: nn.Module, loss_fn, inputs, targets) -> tuple[float, float]:  # noqa: ANN001
    """Worst relative error of the fast clipped sum vs the Opacus reference, and the bound."""
    wrapped = fast_clipping.BookkeepingModule(copy.deepcopy(model).train())
    arguments = inputs if isinstance(inputs, tuple) else (inputs,)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        loss_fn(wrapped(*arguments), targets).backward()
    _, norms = wrapped.clipped_sum(max_grad_norm=1e30)
    bound = float(norms.median())
    kwargs = dict(model=model, loss_fn=loss_fn, inputs=inputs, targets=targets,
                  max_grad_norm=bound)
    fast = _seeded(fast_clipping.fast_clipped_sum, **kwargs)
    reference = _seeded(fast_clipping.reference_clipped_sum, **kwargs)
    return fast_clipping.max_relative_error(fast, reference), bound


def _family_options() -> dict:
    """What the text family trains by default (its ``TextEncoderOptions``)."""
    defaults = {"trainable_layers": 1, "dropout": 0.1, "train_layer_norms": False}
    try:
        from ml_core.families.text import TextEncoderOptions
    except ImportError:  # the family moved its options: measure the documented defaults
        return defaults
    options = TextEncoderOptions()
    return {key: getattr(options, key, value) for key, value in defaults.items()}


def text_case(*, encoder: str, batch: int, sequence: int, device: str, seed: int):
    """The text family's trainable top, lower-layer states of random token ids, labels."""
    from ml_core.models import text_encoder as te

    source = te.pretrained_source() if encoder == "pretrained" else te.tiny_source(seed)
    torch.manual_seed(seed)
    options = _family_options()
    classifier = te.build_classifier(
        source, n_classes=3, trainable_layers=options["trainable_layers"],
        dropout=options["dropout"], train_layer_norms=options["train_layer_norms"])
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 20_000, (batch, sequence), generator=gen)
    lengths = torch.randint(sequence // 4, sequence + 1, (batch,), generator=gen)
    mask = (torch.arange(sequence)[None, :] < lengths[:, None]).long()
    states = classifier.lower(ids, mask)
    labels = torch.randint(0, 3, (batch,), generator=gen)
    top = classifier.top.to(device)
    return top, (states.to(device), mask.to(device)), labels.to(device)


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    device = settings.device
    torch.manual_seed(settings.seed)
    base = dp_mlp.build_mlp().to(device)
    x, y = dp_mlp._data(s["mlp_batch"], device, settings.seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        mlp_error, mlp_bound = relative_error(model=base, loss_fn=dp_mlp._loss, inputs=x,
                                              targets=y)
        top, inputs, labels = text_case(encoder=s["encoder"], batch=s["text_batch"],
                                        sequence=s["sequence"], device=device,
                                        seed=settings.seed)
        text_error, text_bound = relative_error(
            model=top, loss_fn=nn.CrossEntropyLoss(), inputs=inputs, targets=labels)
    details = {
        "mlp": {"error": mlp_error, "max_grad_norm": mlp_bound, "batch": s["mlp_batch"]},
        "text_top": {"error": text_error, "max_grad_norm": text_bound,
                     "batch": s["text_batch"], "sequence": s["sequence"],
                     "encoder": s["encoder"]},
    }
    return [
        Result(f"dp_clip_max_rel_error{settings.suffix}", max(mlp_error, text_error),
               "relative",
               "Opacus per-sample gradients clipped one by one and summed (MLP, and the text "
               "top layer over sequences)", Target(high=1e-5), details=details),
    ]
