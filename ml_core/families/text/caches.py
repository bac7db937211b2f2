"""The frozen encoder's outputs, computed once per run: lower-layer token states (keyed by
the encoder and the exact token ids, kept only while the run lasts: :func:`encoder_memo`),
the reference centre per encoder (public text), and the whole-encoder sentence embeddings a
head-only model reads."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ml_core import cancellation
from ml_core.families.text.options import TextEncoderOptions
from ml_core.models import text_encoder as te

ENCODE_BATCH = 64
# Frozen-encoder outputs of the rows of the run under way (its private model and its twin
# read the same states); keyed by the encoder and the exact token ids. They derive from
# the rows' text, so they live only inside :func:`encoder_memo` (one run) and are dropped
# when it ends: no decrypted personal text outlives the task that needed it.
_STATE_CACHE: OrderedDict[str, torch.Tensor] = OrderedDict()
STATE_CACHE_ENTRIES = 2
_memo_depth = 0
# Above this many cached floats, lower states are recomputed per batch instead of cached.
MAX_CACHED_FLOATS = 400_000_000  # 1.6 GB of float32


def _cache_key(options: TextEncoderOptions, ids: torch.Tensor, mask: torch.Tensor) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([options.source.to_dict(), options.trainable_layers]).encode())
    digest.update(ids.numpy().tobytes())
    digest.update(mask.numpy().tobytes())
    return digest.hexdigest()


def lower_states(lower: te.FrozenLower, ids: torch.Tensor, mask: torch.Tensor, *,
                 device: torch.device) -> torch.Tensor:
    """The frozen part's output for every row, (n, T, hidden) float32 on the CPU.

    Rows are processed in batches of similar length, each cut to its longest text: real
    tokens' outputs do not depend on how much padding follows (padding is masked out of
    attention), and short notes then cost a fraction of a full-length pass. A cancel is
    honoured between batches (:mod:`ml_core.cancellation`).
    """
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    out = torch.zeros(ids.shape[0], ids.shape[1], _hidden_size(lower))
    lower = lower.to(device)
    for start in cancellation.checked(range(0, len(order), ENCODE_BATCH)):
        rows = order[start:start + ENCODE_BATCH]
        width = max(int(lengths[rows].max()), 1)
        with encoding_precision(device):
            states = lower(ids[rows, :width].to(device), mask[rows, :width].to(device))
        out[rows, :width] = states.float().cpu()
    return out


def encoding_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for the frozen encoder's forward pass on CUDA (no gradients flow
    there, and the states are stored as float32); a no-op elsewhere, so the CPU computes
    and trains in float32 throughout. Training (and DP-SGD's clipping) always runs in
    float32."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _hidden_size(lower: te.FrozenLower) -> int:
    return int(lower.embeddings.word_embeddings.embedding_dim)


def cached_lower_states(lower: te.FrozenLower, ids: torch.Tensor, mask: torch.Tensor, *,
                        options: TextEncoderOptions, device: torch.device,
                        store: bool = True, key: str | None = None) -> torch.Tensor | None:
    """:func:`lower_states`, memoised in-process; None when too large to keep in memory.

    ``store=False`` reads the memo but does not add to it (scoring new rows should not
    evict a training run's states). ``key`` is :func:`_cache_key` of the inputs when the
    caller has it already."""
    if ids.shape[0] * ids.shape[1] * _hidden_size(lower) > MAX_CACHED_FLOATS:
        return None
    key = key or _cache_key(options, ids, mask)
    if key in _STATE_CACHE:
        _STATE_CACHE.move_to_end(key)
        return _STATE_CACHE[key]
    states = lower_states(lower, ids, mask, device=device)
    if not store or _memo_depth == 0:  # outside a run: computed, never kept
        return states
    _STATE_CACHE[key] = states
    while len(_STATE_CACHE) > STATE_CACHE_ENTRIES:
        _STATE_CACHE.popitem(last=False)
    return states


@contextlib.contextmanager
def encoder_memo():
    """Keep the frozen encoder's states of the rows for the block (one run: the private
    model and its twin encode the same rows once) and drop them when the outermost block
    ends, however it ends."""
    global _memo_depth
    _memo_depth += 1
    try:
        yield
    finally:
        _memo_depth -= 1
        if _memo_depth == 0:
            _STATE_CACHE.clear()


# Per encoder source, the centre of its embeddings over public reference text (no row's).
_CENTRES: dict[str, torch.Tensor] = {}


def _centre(source: te.EncoderSource, classifier: te.TextClassifier, tokenizer) -> torch.Tensor:
    """:func:`te.reference_centre` of a freshly built (pretrained) classifier, memoised per
    encoder source (it does not depend on the split depth)."""
    key = json.dumps(source.to_dict(), sort_keys=True)
    if key not in _CENTRES:
        _CENTRES[key] = te.reference_centre(classifier, tokenizer).cpu()
    return _CENTRES[key].clone()


@dataclass
class EncodedRows:
    """Token ids, masks and (when cached) frozen-encoder states of every row.

    ``origin`` names what the states are derived from (the encoder and the token ids, see
    :func:`_cache_key`): a training checkpoint records it rather than the states."""

    ids: torch.Tensor
    mask: torch.Tensor
    states: torch.Tensor | None
    lower: te.FrozenLower
    device: torch.device
    origin: str = ""

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower states, mask) for ``rows``, cut to the longest text among them."""
        width = max(int(self.mask[rows].sum(dim=1).max()) if len(rows) else 1, 1)
        mask = self.mask[rows, :width].to(self.device)
        if self.states is not None:
            states = self.states[rows, :width].to(self.device)
        else:
            states = self.lower(self.ids[rows, :width].to(self.device), mask)
        return states, mask


def _embedding_rows(classifier: te.TextClassifier, rows: EncodedRows) -> EncodedRows:
    """Rows as the whole frozen encoder sees them: the (not yet normalised) mean-pooled
    output of every pretrained layer, one vector per row, held as a one-token sequence (so
    a head-only :class:`te.TrainableTop` reads exactly the embedding it would compute from
    the full token states). ``classifier.top`` must still hold the pretrained layers."""
    top = classifier.top
    was_training = top.training
    top.eval()
    pooled = []
    with torch.no_grad():
        for start in cancellation.checked(range(0, len(rows.mask), ENCODE_BATCH)):
            index = torch.arange(start, min(start + ENCODE_BATCH, len(rows.mask)))
            hidden, mask = rows.batch(index)
            pooled.append(te.mean_pool(top.contextual(hidden, mask), mask).float().cpu())
    top.train(was_training)
    vectors = torch.cat(pooled) if pooled else torch.zeros(0, _hidden_size(rows.lower))
    ones = torch.ones(len(vectors), 1, dtype=rows.mask.dtype)
    origin = hashlib.sha256(f"sentence embeddings of {rows.origin}".encode()).hexdigest()
    return EncodedRows(ids=ones, mask=ones, states=vectors[:, None, :], lower=rows.lower,
                       device=rows.device, origin=origin)
