"""The book-keeping path for recurrent layers (Opacus' DPGRU and its kin) and the fused
optimiser step, against Opacus' own per-sample gradients and its own step sequence."""

from __future__ import annotations

import copy

import pytest
import torch
from opacus import PrivacyEngine
from opacus.layers import DPGRU, DPLSTM
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core import fast_clipping as fc
from ml_core import privacy as dp
from ml_core.models.sequence import KnowledgeTracingGRU, shifted_inputs
from ml_core.models.tabular import TabularMLP

pytestmark = pytest.mark.filterwarnings(
    "ignore:Secure RNG turned off", "ignore:Full backward hook is firing")
TOL = 1e-5


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, targets)


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(output, target)


def _compare(model: nn.Module, inputs, targets, loss_fn, max_grad_norm: float) -> float:
    decision = fc.fast_path_support(model)
    assert decision.fast_path, decision.reason
    got = fc.fast_clipped_sum(model=model, loss_fn=loss_fn, inputs=inputs, targets=targets,
                              max_grad_norm=max_grad_norm)
    ref = fc.reference_clipped_sum(model=model, loss_fn=loss_fn, inputs=inputs,
                                   targets=targets, max_grad_norm=max_grad_norm)
    return fc.max_relative_error(got, ref)


def _tracer(seed: int = 0) -> tuple[nn.Module, tuple, torch.Tensor]:
    """The knowledge tracing model as private training wraps it (GRU -> DPGRU), a batch."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model = dp.prepare_module(KnowledgeTracingGRU(6, embed_dim=8, hidden_size=12))
    assert isinstance(model.gru, DPGRU)
    skills = torch.randint(0, 6, (24, 9), generator=gen)
    correct = torch.randint(0, 2, (24, 9), generator=gen)
    return model, (shifted_inputs(skills, correct), skills), correct.float()


def _tracer_loss(logits: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    # A plain mean over each sample's steps, then over samples (loss_reduction="mean").
    per_sample = nn.functional.binary_cross_entropy_with_logits(
        logits, correct, reduction="none").mean(dim=1)
    return per_sample.mean()


@pytest.mark.parametrize("max_grad_norm", [1e-3, 0.5, 1e3], ids=["all-clipped", "some", "none"])
def test_the_knowledge_tracing_gru_matches_opacus(max_grad_norm):
    model, inputs, targets = _tracer()
    decision = fc.fast_path_support(model)
    assert "gru.l0.ih" in decision.layers and "gru.l0.hh" in decision.layers
    assert _compare(model, inputs, targets, _tracer_loss, max_grad_norm) <= TOL


class Recurrent(nn.Module):
    """A two-layer recurrence, time first, with an initial state, then a Linear head."""

    def __init__(self, kind: type[nn.Module]) -> None:
        super().__init__()
        self.rnn = kind(4, 5, num_layers=2, batch_first=False)
        self.head = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, 4)
        if isinstance(self.rnn, DPGRU):
            h0 = torch.ones(2, x.shape[0], 5) * 0.1
            out, _ = self.rnn(x.transpose(0, 1), h0)
        else:
            out, _ = self.rnn(x.transpose(0, 1))
        return self.head(out[-1]).squeeze(-1)


@pytest.mark.parametrize("kind", [DPGRU, DPLSTM])
def test_stacked_time_first_recurrences_match_opacus(kind):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(16, 6, 4, generator=gen)
    assert _compare(Recurrent(kind), x, torch.randn(16, generator=gen), mse, 0.2) <= TOL


def test_the_fast_gru_forward_equals_opacus_dpgru():
    model, inputs, _ = _tracer(seed=3)
    plain = copy.deepcopy(model)
    wrapped = fc.BookkeepingModule(model)
    got = wrapped(*inputs)
    expected = plain(*inputs)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    wrapped.cleanup()
    assert "forward" not in model.gru.__dict__


def _private_step(model: nn.Module, batch: tuple, *, fused: bool) -> list[torch.Tensor]:
    engine = PrivacyEngine()
    x, y = batch
    module, optimizer, _, decision = fc.make_private_fast(
        engine, module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=8), noise_multiplier=1.3,
        max_grad_norm=0.7, noise_generator=torch.Generator().manual_seed(11))
    assert decision.fast_path
    optimizer.zero_grad(set_to_none=True)
    bce(module(x), y).backward()
    if fused:
        assert optimizer.pre_step()
    else:
        assert optimizer._opacus_pre_step()
    assert engine.accountant.history == [(1.3, 8 / 64, 1)]
    return [p.grad.clone() for p in optimizer.params]


def test_the_fused_step_gives_opacus_steps_bits():
    # Clip, accumulate, noise and scale in one pass: the very same gradient, bit for bit,
    # as Opacus' clip_and_accumulate + add_noise + scale_grad with the same generator.
    torch.manual_seed(0)
    x, y = torch.randn(64, 9), torch.randint(0, 2, (64,)).float()
    model = TabularMLP(9, (7, 5))
    fused = _private_step(copy.deepcopy(model), (x, y), fused=True)
    opacus = _private_step(copy.deepcopy(model), (x, y), fused=False)
    for got, expected in zip(fused, opacus, strict=True):
        assert torch.equal(got, expected)


def test_the_gru_steps_on_an_empty_batch():
    model, (inputs, skills), correct = _tracer(seed=5)
    engine = PrivacyEngine()
    module, optimizer, _, decision = fc.make_private_fast(
        engine, module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(TensorDataset(inputs, skills, correct), batch_size=4),
        noise_multiplier=1.0, max_grad_norm=1.0)
    assert decision.fast_path
    optimizer.zero_grad(set_to_none=True)
    _tracer_loss(module(inputs[:0], skills[:0]), correct[:0]).backward()
    optimizer.step()
    assert engine.accountant.history[0][2] == 1
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in model.parameters())
