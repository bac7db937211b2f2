"""The text encoder: offline loading, the frozen/trainable split, and Opacus on the top."""

from __future__ import annotations

import pytest
import torch
from opacus import GradSampleModule

from ml_core.fast_clipping import (
    fast_clipped_sum,
    fast_path_support,
    max_relative_error,
    reference_clipped_sum,
)
from ml_core.models import text_encoder as te


@pytest.fixture(scope="module")
def tokenizer():
    return te.load_tokenizer()


def test_pretrained_path_comes_from_the_installed_package() -> None:
    path = te.pretrained_path()
    assert (path / "model.safetensors").is_file() and (path / "vocab.txt").is_file()


def test_split_encoder_matches_the_whole_bert_model(tokenizer) -> None:
    ids, mask = te.tokenize(tokenizer, ["chest pain since noon", "refill request"],
                            max_length=16)
    backbone = te.load_backbone(te.tiny_source(3))
    torch.manual_seed(0)
    classifier = te.build_classifier(te.tiny_source(3), trainable_layers=1, n_classes=3)
    classifier.eval()
    with torch.no_grad():
        reference = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = classifier.lower(ids, mask)
        for layer in classifier.top.layers:
            hidden = layer(hidden, te.additive_mask(mask, hidden.dtype))
    real = mask.bool()
    torch.testing.assert_close(hidden[real], reference[real], atol=1e-5, rtol=1e-5)


def test_only_the_top_layers_and_head_train() -> None:
    classifier = te.build_classifier(te.tiny_source(0), trainable_layers=1, n_classes=2)
    assert len(classifier.lower.layers) == 1 and len(classifier.top.layers) == 1
    assert not any(p.requires_grad for p in classifier.lower.parameters())
    # Every Linear of the top layer and the head trains; LayerNorms keep pretrained values.
    for module in classifier.top.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, torch.nn.Linear):
            assert own and all(p.requires_grad for p in own)
        elif isinstance(module, torch.nn.LayerNorm):
            assert not any(p.requires_grad for p in own)
    assert fast_path_support(classifier.top).fast_path
    everything = te.build_classifier(te.tiny_source(0), trainable_layers=1, n_classes=2,
                                     train_layer_norms=True)
    assert all(p.requires_grad for p in everything.top.parameters())
    assert not fast_path_support(everything.top).fast_path
    classifier.train()
    assert not classifier.lower.training  # frozen means no dropout either
    with pytest.raises(ValueError):
        te.build_classifier(te.tiny_source(0), trainable_layers=3, n_classes=2)


def test_padding_does_not_change_real_token_states(tokenizer) -> None:
    classifier = te.build_classifier(te.tiny_source(1), trainable_layers=0, n_classes=2)
    ids, mask = te.tokenize(tokenizer, ["short note"], max_length=32)
    width = int(mask.sum())
    full = classifier.lower(ids, mask)[:, :width]
    cut = classifier.lower(ids[:, :width], mask[:, :width])
    torch.testing.assert_close(full, cut, atol=1e-5, rtol=1e-5)


def test_opacus_per_sample_gradients_match_microbatches(tokenizer) -> None:
    # The trained top (a BERT layer with eager attention + head) under Opacus' hooks gives
    # the same per-sample gradients as one backward pass per example.
    torch.manual_seed(0)
    classifier = te.build_classifier(te.tiny_source(2), trainable_layers=1, n_classes=3,
                                     dropout=0.0)
    ids, mask = te.tokenize(tokenizer, ["a b c d", "fever and cough", "x"], max_length=8)
    states = classifier.lower(ids, mask)
    labels = torch.tensor([0, 1, 2])
    top = classifier.top.train()
    for module in top.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # the comparison needs the same forward pass twice
    wrapped = GradSampleModule(top, loss_reduction="sum")
    # (Opacus warns that no input needs a gradient: the states come from the frozen part.)
    torch.nn.functional.cross_entropy(wrapped(states, mask), labels, reduction="sum").backward()
    weight = top.classifier.weight
    per_sample = weight.grad_sample.clone()
    first_layer = top.layers[0].intermediate.dense.weight.grad_sample.clone()
    wrapped._close()
    for i in range(3):
        top.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(top(states[i:i + 1], mask[i:i + 1]),
                                                 labels[i:i + 1], reduction="sum")
        loss.backward()
        torch.testing.assert_close(per_sample[i], weight.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(first_layer[i], top.layers[0].intermediate.dense.weight.grad,
                                   atol=1e-5, rtol=1e-4)


class _WithMask(torch.nn.Module):
    """The top with one batch's mask fixed, for clipping helpers that take one input."""

    def __init__(self, top: torch.nn.Module, mask: torch.Tensor) -> None:
        super().__init__()
        self.top = top
        self.mask = mask

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.top(states, self.mask)


def test_book_keeping_clipping_matches_opacus_hooks_on_the_top(tokenizer) -> None:
    # DP-SGD on the text top takes ml_core.fast_clipping's path (Linear-only trainable
    # parameters): its clipped per-sample gradient sum must equal Opacus' hooks mode,
    # padding, attention and the frozen LayerNorms in between included.
    torch.manual_seed(0)
    classifier = te.build_classifier(te.tiny_source(4), trainable_layers=1, n_classes=3,
                                     dropout=0.0)
    texts = ["a b c d e f", "fever and cough since monday", "x", "chest pain"]
    ids, mask = te.tokenize(tokenizer, texts, max_length=12)
    states = classifier.lower(ids, mask)
    for module in classifier.top.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # both paths must see the same forward pass
    model = _WithMask(classifier.top, mask)
    labels = torch.tensor([0, 1, 2, 1])
    for max_grad_norm in (1e-3, 1.0, 1e3):  # all clipped, some, none
        arguments = {"model": model, "loss_fn": torch.nn.functional.cross_entropy,
                     "inputs": states, "targets": labels, "max_grad_norm": max_grad_norm}
        fast = fast_clipped_sum(**arguments)
        reference = reference_clipped_sum(**arguments)
        assert any(name.startswith("top.layers.0.attention") for name in fast)
        # The key bias's gradient is zero in exact arithmetic (softmax ignores a shift
        # shared by all keys): compare it absolutely, everything else relatively.
        key_bias = "top.layers.0.attention.self.key.bias"
        assert float((fast.pop(key_bias) - reference.pop(key_bias)).abs().max()) < 1e-9
        assert max_relative_error(fast, reference) < 1e-4


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(te.mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))
