"""Private fine-tuning of the image family's last block: which parameters train, BatchNorm
statistics that stay ImageNet's, per-sample clipping of the block's layers checked against
Opacus' hooks and against one-sample-at-a-time gradients, and a small run of the fine-tune
path on a few synthetic images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ml_core import fast_clipping
from ml_core.families.image.backbone import (
    Trunk,
    extract_features,
    first_trainable,
    load_backbone,
    pretrained_top,
)
from ml_core.families.image.data import batch_pixels, prepare
from ml_core.families.image.family import TRAINABLE_BLOCKS, extract, fit
from ml_core.spec import ColumnMapping, PrivacyConfig, TrainConfig
from verticals.manufacturing.demo_images import image_frame


@pytest.fixture(scope="module")
def backbone() -> nn.Module:
    return load_backbone(pretrained=True)


def _batchnorm_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().clone()
            for name, sub in module.named_modules() if isinstance(sub, nn.BatchNorm2d)
            for key, value in sub.state_dict().items()}


def _trainable(top: nn.Module) -> set[str]:
    return {name for name, p in top.named_parameters() if p.requires_grad}


def test_the_default_top_trains_the_last_block_its_1x1_convolutions(backbone) -> None:
    assert TRAINABLE_BLOCKS >= 1
    top = pretrained_top(backbone, n_classes=3, seed=0, trainable_blocks=TRAINABLE_BLOCKS)
    last = f"blocks.{TRAINABLE_BLOCKS - 1}"
    assert {f"{last}.expand.weight", f"{last}.expand.bias", f"{last}.project.weight",
            f"{last}.project.bias", "project.weight", "classifier.weight"} <= _trainable(top)
    # No BatchNorm left to mix samples: each is folded into the convolution before it.
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in top.modules())
    # The depthwise convolution stays frozen; everything else trainable is a plain Linear,
    # so the whole top takes the book-keeping path.
    assert not any(p.requires_grad for p in top.blocks[-1].depthwise.parameters())
    decision = fast_clipping.fast_path_support(top)
    assert decision.fast_path
    assert f"{last}.expand" in decision.layers and f"{last}.project" in decision.layers


@pytest.mark.parametrize("trainable_blocks", [0, 1, 2])
def test_the_top_reproduces_the_pretrained_network(backbone, trainable_blocks) -> None:
    top = pretrained_top(backbone, n_classes=1000, seed=0, trainable_blocks=trainable_blocks)
    top.classifier.load_state_dict(backbone._fc.state_dict())
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    trunk = Trunk(backbone)
    with torch.no_grad():
        expected = backbone(images)
        got = top.eval()(trunk(images, first_trainable(backbone, trainable_blocks)))
    assert torch.allclose(got, expected, atol=1e-4)


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, targets)


def _independent_clipped_sum(top: nn.Module, x: torch.Tensor, y: torch.Tensor,
                             bound: float) -> dict[str, torch.Tensor]:
    """Each sample's gradient by its own backward pass (no Opacus, float64), clipped with
    Opacus' formula, summed."""
    top, x = copy.deepcopy(top).double().train(), x.double()
    named = [(n, p) for n, p in top.named_parameters() if p.requires_grad]
    total = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in named}
    for i in range(len(x)):
        grads = torch.autograd.grad(_loss(top(x[i:i + 1]), y[i:i + 1]), [p for _, p in named])
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        factor = min(1.0, bound / (float(norm) + fast_clipping.CLIP_EPSILON))
        for (n, _), g in zip(named, grads, strict=True):
            total[n] += factor * g
    return total


def test_per_sample_clipping_of_the_block_is_exact(backbone) -> None:
    torch.manual_seed(0)
    top = pretrained_top(backbone, n_classes=4, seed=0, trainable_blocks=1)
    top.dropout.p = 0.0
    with torch.no_grad():  # a trained-looking classifier, so the block's gradients are not 0
        top.classifier.weight.normal_(0, 0.05)
    x = torch.randn(5, 192, 7, 7).clamp_min(-2.0)
    y = torch.tensor([0, 1, 2, 3, 1])
    bound = 0.5
    fast = fast_clipping.fast_clipped_sum(model=top, loss_fn=_loss, inputs=x, targets=y,
                                          max_grad_norm=bound)
    opacus = fast_clipping.reference_clipped_sum(model=top, loss_fn=_loss, inputs=x,
                                                 targets=y, max_grad_norm=bound)
    independent = _independent_clipped_sum(top, x, y, bound)
    assert fast_clipping.max_relative_error(fast, opacus) < 1e-4
    assert fast_clipping.max_relative_error(fast, independent) < 1e-4
    assert float(independent["blocks.0.expand.weight"].norm()) > 0  # not a vacuous check


@pytest.fixture(scope="module")
def tiny_activations(backbone):
    """Twelve synthetic 64 px surface images (three classes) through the frozen trunk, up to
    the input of the last block: the cache the fine-tune path trains from."""
    frame = image_frame(4, seed=5)
    prepared = prepare(frame, ColumnMapping(target="label", roles=(("image", "file"),)))
    rows = np.arange(len(prepared.blobs))
    upto = first_trainable(backbone, 1)
    features = extract_features(Trunk(backbone),
                                lambda part: batch_pixels(prepared.blobs, rows[part]),
                                n=len(rows), upto=upto, batch_size=6)
    return features, prepared.labels


def test_private_fine_tuning_moves_the_block_and_keeps_batchnorm_statistics(
        backbone, tiny_activations) -> None:
    features, labels = tiny_activations
    assert features.shape == (12, 192, 7, 7)
    before_bn = _batchnorm_state(backbone)
    pretrained = pretrained_top(backbone, n_classes=3, seed=0, trainable_blocks=1)
    fitted = fit(backbone=backbone, inputs=features, labels=labels, val_inputs=features,
                 val_labels=labels, n_classes=3,
                 train=TrainConfig(epochs=2, batch_size=6, learning_rate=1e-2, patience=5),
                 privacy=PrivacyConfig(enabled=True, target_epsilon=8.0), stage="training",
                 progress=None, should_stop=None, checkpoint_dir=None, trainable_blocks=1)
    report = fitted.privacy
    assert report["enabled"] and 0 < report["epsilon"] <= 8.0 + 1e-6
    assert report["clipping"]["fast_path"] is True
    assert {"blocks.0.expand", "blocks.0.project", "project", "classifier"} <= set(
        report["clipping"]["layers"])
    trained = fitted.module
    # The backbone's BatchNorm statistics (and every other buffer of it) are untouched...
    after_bn = _batchnorm_state(backbone)
    assert before_bn.keys() == after_bn.keys() and len(before_bn) > 0
    assert all(torch.equal(before_bn[k], after_bn[k]) for k in before_bn)
    # ...the frozen depthwise convolution (its BatchNorm folded in) is the pretrained one...
    assert torch.equal(trained.blocks[0].depthwise.weight, pretrained.blocks[0].depthwise.weight)
    assert torch.equal(trained.blocks[0].depthwise.bias, pretrained.blocks[0].depthwise.bias)
    # ...and the block's 1x1 convolutions and the head moved under DP-SGD.
    for name in ("expand", "project"):
        assert not torch.equal(getattr(trained.blocks[0], name).weight,
                               getattr(pretrained.blocks[0], name).weight)
    assert not torch.equal(trained.project.weight, pretrained.project.weight)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in trained.modules())


def test_a_cache_taken_at_an_earlier_block_serves_a_later_cut(backbone, tmp_path) -> None:
    frame = image_frame(2, seed=8)
    prepared = prepare(frame, ColumnMapping(target="label", roles=(("image", "file"),)))
    trunk = Trunk(backbone)
    common = {"augment_rows": np.array([0, 3]), "views": 1, "seed": 0, "backbone": {"x": 1}}
    earlier = extract(trunk, prepared, upto=14, cache_dir=tmp_path, **common)
    assert [p.name.rsplit("-", 1)[1] for p in tmp_path.iterdir()] == ["b14.pt"]
    served = extract(trunk, prepared, upto=15, cache_dir=tmp_path, **common)
    direct = extract(trunk, prepared, upto=15, cache_dir=None, **common)
    assert earlier.rows.shape == served.rows.shape == (6, 192, 7, 7)
    assert torch.allclose(served.rows, direct.rows, atol=1e-5)
    assert torch.allclose(served.views, direct.views, atol=1e-5)
    assert (served.view_rows == direct.view_rows).all()
    # A later cut is no cache for an earlier one: block 13's input is extracted afresh.
    extract(trunk, prepared, upto=13, cache_dir=tmp_path, **common)
    assert sorted(p.name.rsplit("-", 1)[1] for p in tmp_path.iterdir()) == ["b13.pt", "b14.pt"]
