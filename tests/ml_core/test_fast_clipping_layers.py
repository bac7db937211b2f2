"""The book-keeping path for the families' other layers (embeddings, 1-D convolutions,
Opacus' recurrent layers), against Opacus' per-sample gradients clipped one by one
(``fast_clipping.reference_clipped_sum``), and the fused optimiser step against Opacus' own
step sequence."""

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
from ml_core.models.forecaster import GlobalForecaster
from ml_core.models.recommender import ItemFactors
from ml_core.models.sequence import KnowledgeTracingGRU, shifted_inputs
from ml_core.models.sequence_regressor import SequenceRegressor
from ml_core.models.tabular import TabularMLP

pytestmark = pytest.mark.filterwarnings(
    "ignore:Secure RNG turned off", "ignore:Full backward hook is firing")
TOL = 1e-5


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(output, target)


def ranking(scores: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    # The recommender's loss: the positive's margin over sampled negatives.
    return -nn.functional.logsigmoid(scores[:, :1] - scores[:, 1:]).mean()


class Tokens(nn.Module):
    """Sequences of tokens with repeats within a sample, the embedding used twice (tokens
    and a per-sample tag), and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(12, 5)
        self.head = nn.Linear(5, 1)

    def forward(self, tokens: torch.Tensor, tag: torch.Tensor) -> torch.Tensor:
        pooled = self.embedding(tokens).mean(dim=1) + self.embedding(tag)
        return self.head(torch.tanh(pooled)).squeeze(-1)


def _compare(model: nn.Module, inputs, targets, loss_fn, max_grad_norm: float) -> float:
    decision = fc.fast_path_support(model)
    assert decision.fast_path, decision.reason
    got = fc.fast_clipped_sum(model=model, loss_fn=loss_fn, inputs=inputs, targets=targets,
                              max_grad_norm=max_grad_norm)
    ref = fc.reference_clipped_sum(model=model, loss_fn=loss_fn, inputs=inputs,
                                   targets=targets, max_grad_norm=max_grad_norm)
    return fc.max_relative_error(got, ref)


@pytest.mark.parametrize("length", [7, 80], ids=["short", "sorted"])
@pytest.mark.parametrize("per_sample", [True, False], ids=["per-sample", "gram"])
@pytest.mark.parametrize("max_grad_norm", [1e-3, 1.0, 1e3], ids=["all-clipped", "some", "none"])
def test_embedding_sequences_match_opacus(max_grad_norm, per_sample, length, monkeypatch):
    # A small table's per-sample gradients, or (no room for them) the Gram form up to 64
    # lookups a sample and a sort beyond.
    if per_sample:  # (the tag is a second use: one more lookup a sample)
        assert fc._embedding_per_sample_is_cheaper(40, length + 1, 12, 5)
    else:
        monkeypatch.setattr(fc, "PER_SAMPLE_MAX_ELEMENTS", 0)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 6, (40, length), generator=gen)  # few rows: many repeats
    tag = torch.randint(0, 12, (40,), generator=gen)
    y = torch.randn(40, generator=gen)
    assert _compare(Tokens(), (tokens, tag), y, mse, max_grad_norm) <= TOL


def _histories(n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A user's drawn items (some padding), a leave-one-out mixture, and per drawn item
    its positive and 4 negatives: the recommender's training inputs."""
    history = torch.randint(1, 21, (n, 4), generator=gen)
    history[::3, -1] = 0  # padding
    present = (history > 0).float()
    mixture = present[:, None, :] * (1 - torch.eye(4))[None]
    mixture = mixture / mixture.sum(-1, keepdim=True).clamp(min=1)
    candidates = torch.cat([history[..., None], torch.randint(1, 21, (n, 4, 4), generator=gen)],
                           dim=-1)
    return history, mixture, candidates


def user_ranking(scores: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return ranking(scores.reshape(-1, scores.shape[-1]), _)


@pytest.mark.parametrize("per_sample", [True, False], ids=["per-sample", "gram"])
def test_the_recommender_matches_opacus(per_sample, monkeypatch):
    if not per_sample:
        monkeypatch.setattr(fc, "PER_SAMPLE_MAX_ELEMENTS", 0)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    model = ItemFactors(20, dim=8)
    assert _compare(model, _histories(64, gen), torch.zeros(64), user_ranking, 0.05) <= TOL


def test_the_recommender_with_catalogue_attributes_matches_opacus():
    # The public attribute levels (buffers) feed a bias-free Linear of one weight per
    # attribute column over (users, draws, candidates, columns) features.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(5)
    levels = torch.randint(0, 6, (21, 2), generator=gen) + torch.tensor([0, 6])
    profile = torch.zeros(21, 12).scatter_(1, levels, 1.0)
    profile[0] = 0
    model = ItemFactors(20, dim=8, n_levels=12, n_columns=2, profile=profile,
                        match=profile.clone(), level_column=torch.tensor([0] * 6 + [1] * 6))
    assert _compare(model, _histories(64, gen), torch.zeros(64), user_ranking, 0.05) <= TOL


def test_the_forecaster_matches_opacus():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(64, 6, generator=gen)
    series = torch.randint(0, 9, (64,), generator=gen)
    model = GlobalForecaster(6, 8)
    assert _compare(model, (features, series), torch.randn(64, generator=gen), mse,
                    0.1) <= TOL


def test_embedding_models_train_on_the_fast_path_and_step_with_empty_batches():
    torch.manual_seed(0)
    model = ItemFactors(20, dim=8)
    history, mixture, candidates = _histories(200, torch.Generator().manual_seed(4))
    engine = PrivacyEngine()
    module, optimizer, loader, decision = fc.make_private_fast(
        engine, module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(TensorDataset(history, mixture, candidates), batch_size=2),
        noise_multiplier=1.0, max_grad_norm=1.0)
    assert decision.fast_path and "Embedding" in decision.reason
    assert isinstance(module, fc.BookkeepingModule)
    empty = 0
    for step, (h, m, c) in enumerate(loader):
        if step == 60:
            break
        empty += len(h) == 0
        optimizer.zero_grad(set_to_none=True)
        user_ranking(module(h, m, c), None).backward()
        optimizer.step()
    assert empty > 0  # batch 2 of 200 rows: e^-2 of the Poisson batches are empty
    assert engine.accountant.history[0][2] == 60
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("options", [{"max_norm": 1.0}, {"padding_idx": 0},
                                     {"scale_grad_by_freq": True}, {"sparse": True}])
def test_embeddings_opacus_clips_otherwise_stay_on_opacus(options):
    decision = fc.fast_path_support(nn.Sequential(nn.Embedding(5, 3, **options)))
    assert not decision.fast_path and "Embedding" in decision.reason


class Convolutions(nn.Module):
    """Conv1d with padding, stride and dilation, one without bias, one frozen, one used
    twice, then a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv1d(3, 6, kernel_size=3, padding=2, stride=2, dilation=2)
        self.frozen = nn.Conv1d(6, 6, kernel_size=1)
        self.frozen.requires_grad_(False)
        self.shared = nn.Conv1d(6, 6, kernel_size=3, padding=1, bias=False)
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.frozen(torch.relu(self.first(x))))
        h = self.shared(torch.tanh(self.shared(h)))
        return self.head(h.mean(dim=2)).squeeze(-1)


@pytest.mark.parametrize("max_grad_norm", [1e-3, 1.0, 1e3], ids=["all-clipped", "some", "none"])
def test_conv1d_matches_opacus(max_grad_norm):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(32, 3, 17, generator=gen)
    assert _compare(Convolutions(), x, torch.randn(32, generator=gen), mse,
                    max_grad_norm) <= TOL


def test_the_sequence_regressor_matches_opacus():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(5)
    windows = torch.randn(48, 20, 4, generator=gen)  # (batch, window, features)
    model = SequenceRegressor(4, window=20)
    assert _compare(model, windows, torch.randn(48, generator=gen), mse, 0.1) <= TOL


def test_conv1d_steps_on_an_empty_batch():
    torch.manual_seed(0)
    model = SequenceRegressor(4, window=20)
    engine = PrivacyEngine()
    data = TensorDataset(torch.randn(100, 20, 4), torch.randn(100))
    module, optimizer, loader, decision = fc.make_private_fast(
        engine, module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(data, batch_size=10), noise_multiplier=1.0, max_grad_norm=1.0)
    assert decision.fast_path and "Conv1d" in decision.reason
    empty = (torch.zeros(0, 20, 4), torch.zeros(0))
    optimizer.zero_grad(set_to_none=True)
    mse(module(empty[0]), empty[1]).backward()
    optimizer.step()
    assert engine.accountant.history[0][2] == 1
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in model.parameters())


# --- recurrent layers (Opacus' DPGRU and its kin) and the fused step -------------------------


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, targets)


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


def _private_step(model: nn.Module, batch: tuple, *, fused: bool,
                  rows: int | None = None) -> list[torch.Tensor]:
    """One private step on ``batch`` (the first ``rows`` of it; all by default), the loader
    over all of it at batch size 8."""
    engine = PrivacyEngine()
    x, y = batch
    module, optimizer, _, decision = fc.make_private_fast(
        engine, module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=8), noise_multiplier=1.3,
        max_grad_norm=0.7, noise_generator=torch.Generator().manual_seed(11))
    assert decision.fast_path
    optimizer.zero_grad(set_to_none=True)
    bce(module(x[:rows]), y[:rows]).backward()
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


def _first(inputs, count: int = 1):  # noqa: ANN001, ANN202 - a tensor or a tuple of them
    return (tuple(t[:count] for t in inputs) if isinstance(inputs, tuple)
            else inputs[:count])


@pytest.mark.parametrize("max_grad_norm", [1e-3, 1e3], ids=["clipped", "not-clipped"])
def test_a_batch_of_one_sample_matches_opacus(max_grad_norm):
    # One sample: its gradient is the batch's, clipped as a whole (one norm over every
    # layer's sum) -- Linear, sequence Linear, Conv1d, Embedding and DPGRU layers.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(8)
    tracer, tracer_inputs, correct = _tracer(seed=2)
    cases = [
        (TabularMLP(9, (7, 5)), torch.randn(1, 9, generator=gen),
         torch.randint(0, 2, (1,), generator=gen).float(), bce),
        (Convolutions(), torch.randn(1, 3, 17, generator=gen), torch.randn(1, generator=gen),
         mse),
        (SequenceRegressor(4, window=20), torch.randn(1, 20, 4, generator=gen),
         torch.randn(1, generator=gen), mse),
        (Tokens(), (torch.randint(0, 12, (1, 6), generator=gen),
                    torch.randint(0, 12, (1,), generator=gen)), torch.randn(1, generator=gen),
         mse),
        (tracer, _first(tracer_inputs), correct[:1], _tracer_loss),
    ]
    for model, inputs, targets, loss_fn in cases:
        assert _compare(model, inputs, targets, loss_fn, max_grad_norm) <= TOL, type(model)


def test_a_batch_of_one_sample_steps_like_opacus():
    # The fused step (noise, scaling) on the one-sample path gives Opacus' step's bits.
    torch.manual_seed(0)
    x, y = torch.randn(64, 9), torch.randint(0, 2, (64,)).float()
    model = TabularMLP(9, (7, 5))
    fused = _private_step(copy.deepcopy(model), (x, y), fused=True, rows=1)
    opacus = _private_step(copy.deepcopy(model), (x, y), fused=False, rows=1)
    for got, expected in zip(fused, opacus, strict=True):
        assert torch.equal(got, expected)


def test_a_batch_of_one_sample_runs_the_layers_own_forward_and_records_nothing():
    # Its gradient is the sample's: autograd computes it, nothing is recorded, and the step
    # clips it whole.
    torch.manual_seed(0)
    model = TabularMLP(9, (7, 5))
    module = fc.BookkeepingModule(model)
    bce(module(torch.randn(1, 9)), torch.ones(1)).backward()
    assert not any(state.records for state in module.layer_states)
    assert all(p.grad is not None for p in model.parameters())
    sums, norms = module.clipped_sum(max_grad_norm=1e-3)
    assert norms.shape == (1,) and float(norms) > 1e-3
    total = torch.linalg.vector_norm(torch.stack([g.norm() for g in sums.values()]))
    assert float(total) == pytest.approx(1e-3, rel=1e-4)
    assert all(p.grad is None for p in model.parameters())  # taken by the sum


@pytest.mark.parametrize("second", [1, 3], ids=["one-sample", "three-samples"])
def test_a_second_pass_after_a_batch_of_one_sample_is_refused(second):
    # Two passes between steps would be clipped as one sample: refused, like two recorded
    # passes.
    torch.manual_seed(0)
    module = fc.BookkeepingModule(TabularMLP(9, (7, 5)))
    bce(module(torch.randn(1, 9)), torch.ones(1)).backward()
    bce(module(torch.randn(second, 9)), torch.ones(second)).backward()
    with pytest.raises(RuntimeError, match="optimiser steps"):
        module.clipped_sum(max_grad_norm=1.0)


@pytest.mark.parametrize("length", [2, 40], ids=["gram", "per-sample"])
def test_sequence_linear_layers_match_opacus_on_both_norm_strategies(length):
    # A Linear over (batch, steps, features): the Gram form for short sequences, per-sample
    # gradients (reused for the clipped sum) for long ones.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(9)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    x = torch.randn(16, length, 6, generator=gen)

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mse(output.view(16, length).mean(1), target)

    # The first layer's strategy (the head, 8 -> 1, is per-sample at both lengths).
    assert fc._gram_is_cheaper(torch.empty(1, length, 6), torch.empty(1, length, 8)) == (
        length == 2)
    assert _compare(model, x, torch.randn(16, generator=gen), loss, 0.05) <= TOL
