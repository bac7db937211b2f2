"""The book-keeping path for the families' other layers (embeddings, 1-D convolutions),
against Opacus' per-sample gradients clipped one by one
(``fast_clipping.reference_clipped_sum``)."""

from __future__ import annotations

import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core import fast_clipping as fc
from ml_core.models.forecaster import GlobalForecaster
from ml_core.models.recommender import ItemFactors
from ml_core.models.sequence_regressor import SequenceRegressor

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
    assert fc.fast_path_support(model).fast_path
    got = fc.fast_clipped_sum(model=model, loss_fn=loss_fn, inputs=inputs, targets=targets,
                              max_grad_norm=max_grad_norm)
    ref = fc.reference_clipped_sum(model=model, loss_fn=loss_fn, inputs=inputs,
                                   targets=targets, max_grad_norm=max_grad_norm)
    return fc.max_relative_error(got, ref)


@pytest.mark.parametrize("length", [7, 80], ids=["gram", "sorted"])
@pytest.mark.parametrize("max_grad_norm", [1e-3, 1.0, 1e3], ids=["all-clipped", "some", "none"])
def test_embedding_sequences_match_opacus(max_grad_norm, length):
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


def test_the_recommender_matches_opacus():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    model = ItemFactors(20, dim=8)
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
