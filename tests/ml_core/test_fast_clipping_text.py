"""The book-keeping path on the text family's trainable top: Linear layers over sequences.

A tiny randomly initialised BERT (2 layers, 32 wide) split as the text family splits it:
the last transformer layer, mean pooling, dropout and a linear head train, LayerNorms stay
frozen. Its attention and feed-forward Linear layers see (batch, sequence, width) inputs,
whose per-sample gradient norms come from the Gram form ``sum_{t,s} (a_t.a_s)(g_t.g_s)``
(or from per-sample gradients where those are cheaper). References: Opacus' per-sample
gradients, a per-sample loop, and the same computation in float64.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from opacus import PrivacyEngine
from opacus.grad_sample import GradSampleModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core import fast_clipping as fc
from ml_core import privacy as dp
from ml_core.models import text_encoder as te

pytestmark = pytest.mark.filterwarnings(
    "ignore:Secure RNG turned off", "ignore:.*backward hook.*",
)
TOL = 1e-5
SEED = 7


@pytest.fixture(scope="module")
def text_batch():
    torch.manual_seed(0)
    classifier = te.build_classifier(te.tiny_source(3), trainable_layers=1, n_classes=3)
    gen = torch.Generator().manual_seed(1)
    batch, sequence = 12, 20
    ids = torch.randint(1000, 20_000, (batch, sequence), generator=gen)
    lengths = torch.randint(3, sequence + 1, (batch,), generator=gen)
    mask = (torch.arange(sequence)[None, :] < lengths[:, None]).long()
    states = classifier.lower(ids, mask)
    labels = torch.randint(0, 3, (batch,), generator=gen)
    return classifier.top, (states, mask), labels


def seeded(fn, **kwargs):
    # Dropout stays on; every pass draws the same masks.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return fn(**kwargs)


def median_bound(top, inputs, labels) -> float:
    module = GradSampleModule(copy.deepcopy(top).train())
    seeded(lambda: nn.CrossEntropyLoss()(module(*inputs), labels).backward())
    per_sample = [p.grad_sample.reshape(len(labels), -1) for p in module.parameters()
                  if p.requires_grad]
    return float(torch.cat(per_sample, dim=1).norm(dim=1).median())


def test_the_text_top_takes_the_fast_path_with_frozen_layer_norms(text_batch):
    top, _, _ = text_batch
    decision = fc.fast_path_support(top)
    assert decision.fast_path
    assert {name.rsplit(".", 1)[-1] for name in decision.layers} >= {
        "query", "key", "value", "dense", "classifier"}
    assert not any(p.requires_grad for m in top.modules() if isinstance(m, nn.LayerNorm)
                   for p in m.parameters())


def test_text_top_clipped_sum_matches_opacus_per_sample_reference(text_batch):
    top, inputs, labels = text_batch
    bound = median_bound(top, inputs, labels)
    kwargs = dict(model=top, loss_fn=nn.CrossEntropyLoss(), inputs=inputs, targets=labels,
                  max_grad_norm=bound)
    got = seeded(fc.fast_clipped_sum, **kwargs)
    reference = seeded(fc.reference_clipped_sum, **kwargs)
    assert set(got) == {name for name, p in top.named_parameters() if p.requires_grad}
    assert fc.max_relative_error(got, reference) <= TOL
    # Both against the same computation in float64: the fast path is at least as close.
    exact = seeded(fc.reference_clipped_sum, **{
        **kwargs, "model": copy.deepcopy(top).double(),
        "inputs": (inputs[0].double(), inputs[1])})
    exact = {name: value.float() for name, value in exact.items()}
    assert fc.max_relative_error(got, exact) <= TOL


def test_text_top_clipped_sum_matches_a_per_sample_loop(text_batch):
    top, (states, mask), labels = text_batch
    model = copy.deepcopy(top).train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):  # one sample per pass: masks cannot match
            module.p = 0.0
    loss_fn = nn.CrossEntropyLoss()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = []
    for i in range(len(labels)):
        model.zero_grad(set_to_none=True)
        loss_fn(model(states[i:i + 1], mask[i:i + 1]), labels[i:i + 1]).backward()
        grads.append({n: p.grad.detach().clone() for n, p in named})
    norms = torch.stack([torch.sqrt(sum(g.pow(2).sum() for g in grad.values()))
                         for grad in grads])
    bound = float(norms.median())
    loop = {n: sum(min(1.0, bound / (float(norm) + fc.CLIP_EPSILON)) * grad[n]
                   for grad, norm in zip(grads, norms, strict=True)) for n, _ in named}
    got = fc.fast_clipped_sum(model=model, loss_fn=loss_fn, inputs=(states, mask),
                              targets=labels, max_grad_norm=bound)
    assert fc.max_relative_error(got, loop) <= TOL


@pytest.mark.parametrize(("sequence", "d_in", "d_out"), [
    (3, 8, 8),  # T (in + out) = 48 <= in * out = 64: the Gram form
    (7, 6, 3),  # 63 > 18: per-sample gradients
])
def test_sequence_norms_on_both_strategies_equal_the_per_sample_gradient_norm(
        sequence, d_in, d_out):
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(5, sequence, d_in, generator=gen)
    g = torch.randn(5, sequence, d_out, generator=gen)
    exact = torch.einsum("bto,bti->boi", g.double(), a.double()).pow(2).sum((1, 2))
    got = fc._sequence_weight_sq_norms(a, g)
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=0)


def test_private_text_training_step_takes_the_fast_path_and_is_accounted(text_batch, caplog):
    top, inputs, labels = text_batch
    model = dp.prepare_module(copy.deepcopy(top)).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loader = DataLoader(TensorDataset(torch.arange(120)), batch_size=12)
    engine = PrivacyEngine()
    with caplog.at_level(logging.INFO, logger="ml_core.fast_clipping"):
        module, dp_optimizer, _, decision = fc.make_private_fast(
            engine, module=model, optimizer=optimizer, data_loader=loader,
            noise_multiplier=1.0, max_grad_norm=1.0)
    assert decision.fast_path and "fast path on" in caplog.text
    assert isinstance(module, fc.BookkeepingModule)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dp_optimizer.zero_grad(set_to_none=True)
    nn.CrossEntropyLoss()(module(*inputs), labels).backward()
    dp_optimizer.step()
    assert engine.accountant.history == [(1.0, 0.1, 1)]
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed == {n for n, p in model.named_parameters() if p.requires_grad}


def test_trained_layer_norms_fall_back_to_opacus_and_say_why(text_batch, caplog):
    top, inputs, labels = text_batch
    model = copy.deepcopy(top)
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.requires_grad_(True)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with caplog.at_level(logging.WARNING, logger="ml_core.fast_clipping"):
        module, _, _, decision = fc.make_private_fast(
            PrivacyEngine(), module=model.train(), optimizer=optimizer,
            data_loader=DataLoader(TensorDataset(torch.arange(24)), batch_size=12),
            noise_multiplier=1.0, max_grad_norm=1.0)
    assert not decision.fast_path and "LayerNorm" in decision.reason
    assert "fast path off" in caplog.text and isinstance(module, GradSampleModule)
