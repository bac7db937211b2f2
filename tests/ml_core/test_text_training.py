"""How the text family trains: sentence embeddings, class weights, the private head-only
model and its artifact, float32 on the CPU. Tiny random encoder (fast); the pretrained
MiniLM runs in the contract battery."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ml_core.families import text
from ml_core.models import text_encoder as te
from tests.ml_core.test_family_text import MAPPING, SPEC, TINY, notes


@pytest.fixture(scope="module")
def tokenizer():
    return te.load_tokenizer()


def test_class_weights_make_every_label_count_the_same() -> None:
    y = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = text.class_weights(y, 4)  # label 3 is absent: weight 1
    np.testing.assert_allclose(weights, [10 / (4 * 6), 10 / (4 * 3), 10 / (4 * 1), 1.0])
    assert np.bincount(y, weights=weights[y])[:3] == pytest.approx([2.5, 2.5, 2.5])


def test_weighted_loss_is_a_plain_mean_over_rows() -> None:
    # Opacus' loss_reduction="mean" divides by the batch size: the loss must too (torch's
    # CrossEntropyLoss(weight=...) divides by the sum of the weights instead).
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 2, 2])
    weights = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    loss = text.WeightedCrossEntropy(weights, torch.device("cpu"))(logits, labels)
    per_row = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    expected = (per_row * torch.tensor(weights)[labels]).sum() / 5
    torch.testing.assert_close(loss, expected)
    plain = text.WeightedCrossEntropy(None, torch.device("cpu"))(logits, labels)
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(logits, labels))


def test_sentence_embedding_is_mean_pooled_normalised_and_centred(tokenizer) -> None:
    torch.manual_seed(0)
    classifier = te.build_classifier(te.tiny_source(5), trainable_layers=1, n_classes=2,
                                     dropout=0.0)
    centre = te.reference_centre(classifier, tokenizer)
    torch.testing.assert_close(centre, te.reference_centre(classifier, tokenizer))
    classifier.top.centre.copy_(centre)
    classifier.eval()
    ids, mask = te.tokenize(tokenizer, ["no chest pain", "crushing chest pain, sweaty"],
                            max_length=16)
    with torch.no_grad():
        hidden = classifier.lower(ids, mask)
        for layer in classifier.top.layers:
            hidden = layer(hidden, te.additive_mask(mask, hidden.dtype))
        real = mask.unsqueeze(-1).float()
        pooled = (hidden * real).sum(1) / real.sum(1)
        expected = pooled / pooled.norm(dim=-1, keepdim=True) - centre
        lower = classifier.lower(ids, mask)
        torch.testing.assert_close(classifier.top.embed(lower, mask), expected)


def test_private_head_reads_exactly_the_whole_frozen_encoder(tokenizer) -> None:
    # The head-only private model trains on embeddings computed from the cached states of
    # the split encoder; the released model recomputes them with every layer frozen.
    torch.manual_seed(0)
    split = te.build_classifier(te.tiny_source(6), trainable_layers=1, n_classes=3)
    whole = te.build_classifier(te.tiny_source(6), trainable_layers=0, n_classes=3)
    texts = ["pain", "sudden weakness of the left arm and slurred speech", "refill"]
    ids, mask = te.tokenize(tokenizer, texts, max_length=16)
    rows = text.EncodedRows(ids=ids, mask=mask, states=split.lower(ids, mask),
                            lower=split.lower, device=torch.device("cpu"))
    embedded = text._embedding_rows(split, rows)
    reference = te.mean_pool(whole.lower(ids, mask), mask)
    torch.testing.assert_close(embedded.states[:, 0, :], reference, atol=1e-5, rtol=1e-5)
    assert embedded.mask.shape == (3, 1)


def test_cpu_encoding_stays_float32(tokenizer) -> None:
    cpu = torch.device("cpu")
    with text.encoding_precision(cpu):
        assert not torch.is_autocast_enabled("cpu")
    classifier = te.build_classifier(te.tiny_source(0), trainable_layers=1, n_classes=2)
    ids, mask = te.tokenize(tokenizer, ["short note", "a longer note about a rash"],
                            max_length=12)
    assert text.lower_states(classifier.lower, ids, mask, device=cpu).dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in classifier.parameters())


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    frame = notes(240, seed=2)
    result = text.run(frame=frame, mapping=MAPPING, spec=SPEC, encoder=TINY,
                      artifact_dir=tmp_path_factory.mktemp("private-head"))
    return frame, result


@pytest.mark.slow
def test_private_run_trains_the_head_only_and_says_why(private_run) -> None:
    _, result = private_run
    loaded = text.load(result.artifact_path)
    assert loaded.metadata["private_head_only"] is True
    assert loaded.metadata["trainable_layers"] == 0
    # Released: every pretrained layer frozen (re-read at load), the private head on top.
    assert len(loaded.classifier.lower.layers) == te.encoder_depth(TINY.source)
    assert len(loaded.classifier.top.layers) == 0
    notes_text = " ".join(result.notes)
    assert "DP-SGD trains the linear head only" in notes_text and "Why:" in notes_text
    assert "Class weights" in notes_text
    assert "book-keeping" in result.privacy["clipping"]["reason"]
    assert result.nonprivate_metrics is not None  # the fine-tuned twin, for comparison
    # The centre travels with the weights, so a reload reads the same embedding.
    centre = loaded.classifier.top.centre
    assert centre.abs().sum() > 0


@pytest.mark.slow
def test_private_fine_tuning_of_the_top_layer_is_still_available(tmp_path) -> None:
    options = dataclasses.replace(TINY, private_head_only=False)
    train = dataclasses.replace(SPEC.train, epochs=1)
    result = text.run(frame=notes(160, seed=3), mapping=MAPPING, spec=SPEC, train=train,
                      artifact_dir=tmp_path, encoder=options)
    loaded = text.load(result.artifact_path)
    assert loaded.metadata["private_head_only"] is False
    assert loaded.metadata["trainable_layers"] == 1
    assert result.privacy["enabled"] and result.privacy["epsilon"] <= 8.0 + 1e-6
