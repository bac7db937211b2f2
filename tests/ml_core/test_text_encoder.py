"""The text encoder: offline loading, the frozen/trainable split, and Opacus on the top."""

from __future__ import annotations

import pytest
import torch
from opacus import GradSampleModule

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
    assert all(p.requires_grad for p in classifier.top.parameters())
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


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(te.mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))
