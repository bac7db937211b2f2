"""The text encoder family's options: which encoder, and how the model and its private
twin train."""

from __future__ import annotations

from dataclasses import dataclass, field

from ml_core.models import text_encoder as te

DEFAULT_TRAINABLE_LAYERS = 2


@dataclass(frozen=True)
class TextEncoderOptions:
    """Which encoder, and how it trains. Defaults: MiniLM; the non-private model fine-tunes
    the last 2 layers + head, the private one trains the head alone (see :func:`run`)."""

    source: te.EncoderSource = field(default_factory=te.pretrained_source)
    trainable_layers: int = DEFAULT_TRAINABLE_LAYERS
    dropout: float = 0.1
    # False: the trained layers' LayerNorm parameters keep their pretrained values, so
    # every trained parameter is a Linear's and DP-SGD takes the book-keeping path
    # (ml_core.fast_clipping, ~2.5x cheaper per private step here than Opacus' hooks).
    train_layer_norms: bool = False
    # The head starts from zero knowledge and sits on unit-length embeddings: it learns
    # at this rate, the transformer layers at TrainConfig.learning_rate (3e-4 by default).
    head_learning_rate: float = 2e-2
    # Private runs: DP-SGD on the head alone, over the frozen encoder's embeddings, with
    # about this many (Poisson) batches per epoch and this learning rate. Few large
    # batches: the noise is added once per batch, so larger batches drown it better.
    # Measured on note-triage sample data (300 rows, 8 epochs, epsilon 8, 6 data seeds,
    # macro F1 on 1,500 fresh notes): 8 batches at 0.1 gave 0.460 (worst seed 0.362),
    # 4 batches at 0.1 0.466 (0.401), 4 batches at 0.3 0.496 (0.463).
    private_head_only: bool = True
    private_batches_per_epoch: int = 4
    private_learning_rate: float = 0.3
    # Loss weights n / (k n_c): every class counts the same however rare.
    class_weighting: bool = True
    # Non-private: start the head from a logistic regression on the frozen embeddings.
    # Off by default: on the battery-size sample data (300 rows, 60 test rows) it raised the
    # mean note-triage macro F1 over 5 data seeds (0.722 vs 0.692) but lost badly on one
    # seed (0.564 vs 0.790 without it); test splits that small cannot tell them apart.
    linear_probe_start: bool = False
