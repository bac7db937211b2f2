"""The O(batch) Poisson sampler is Poisson sampling: each row in each batch independently
with probability q, the same number of steps and empty batches as Opacus' loader, and the
same epsilon for the same noise, sample rate and steps. Fixed seeds: no flaky statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.data_loader import DPDataLoader
from scipy import stats
from torch.utils.data import DataLoader

from ml_core import privacy as dp
from ml_core.models import TabularMLP
from ml_core.sampling import PoissonBatchSampler, PoissonLoader
from ml_core.spec import PrivacyConfig
from ml_core.trainer import make_loader

# Each check fails by chance with probability P_FLOOR at most (and never, with fixed seeds,
# once it has passed): a broken sampler lands far below it.
P_FLOOR = 1e-4


def draws(n: int, q: float, batches: int, seed: int = 0) -> list[np.ndarray]:
    sampler = PoissonBatchSampler(num_samples=n, sample_rate=q, seed=seed, steps=batches)
    return [np.asarray(batch) for batch in sampler]


def test_batches_are_sorted_distinct_rows_and_as_many_as_opacus_takes():
    sampler = PoissonBatchSampler(num_samples=1000, sample_rate=1 / 7, seed=3)
    assert len(sampler) == int(7.0) == len(list(sampler))
    for batch in draws(1000, 0.05, 200):
        assert np.all(np.diff(batch) > 0) and (len(batch) == 0 or 0 <= batch[0] < batch[-1] < 1000)


# NumPy draws the subset by Floyd's method for n <= 10,000 or batches of at most n / 20, by
# a partial shuffle otherwise: all three cases are checked.
@pytest.mark.parametrize(("n", "q", "batches"),
                         [(400, 0.05, 20_000), (20_000, 0.01, 3_000), (20_000, 0.1, 300)])
def test_each_row_is_included_with_probability_q(n, q, batches):
    counts = np.zeros(n)
    for batch in draws(n, q, batches):
        counts[batch] += 1
    expected = batches * q
    # Each row's count is Binomial(batches, q), independently: a chi-square with n terms.
    statistic = float(((counts - expected) ** 2 / (expected * (1 - q))).sum())
    assert stats.chi2.sf(statistic, n) > P_FLOOR
    assert counts.mean() / batches == pytest.approx(q, rel=0.01)


def test_rows_are_included_independently_of_each_other():
    n, q, batches = 50, 0.2, 20_000
    together = 0
    for batch in draws(n, q, batches, seed=1):
        chosen = set(batch.tolist())
        together += (0 in chosen) and (n - 1 in chosen)
    # P(both) = q^2 under Poisson sampling (fixed-size batches would give less).
    assert stats.binomtest(together, batches, q * q).pvalue > P_FLOOR


@pytest.mark.parametrize(("n", "q", "batches"), [(300, 0.03, 20_000), (50_000, 0.001, 20_000)])
def test_batch_sizes_follow_the_binomial_distribution(n, q, batches):
    sizes = np.array([len(batch) for batch in draws(n, q, batches, seed=2)])
    assert sizes.mean() == pytest.approx(n * q, rel=0.02)
    assert sizes.var() == pytest.approx(n * q * (1 - q), rel=0.05)
    # Goodness of fit against Binomial(n, q), the tails pooled into the end bins.
    edges = np.arange(int(stats.binom.ppf(0.001, n, q)), int(stats.binom.ppf(0.999, n, q)) + 1)
    observed = np.array([np.sum(sizes <= edges[0])]
                        + [np.sum(sizes == k) for k in edges[1:-1]]
                        + [np.sum(sizes >= edges[-1])])
    pmf = np.array([stats.binom.cdf(edges[0], n, q)]
                   + [stats.binom.pmf(k, n, q) for k in edges[1:-1]]
                   + [stats.binom.sf(edges[-1] - 1, n, q)])
    assert stats.chisquare(observed, pmf * batches).pvalue > P_FLOOR


def test_the_same_seed_gives_the_same_batches_and_a_restored_state_continues_them():
    first = PoissonBatchSampler(num_samples=5000, sample_rate=0.01, seed=7)
    again = PoissonBatchSampler(num_samples=5000, sample_rate=0.01, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    state = first.get_state()
    assert state.dtype == torch.uint8
    expected = [first.draw() for _ in range(5)]
    other = PoissonBatchSampler(num_samples=5000, sample_rate=0.01, seed=99)
    other.set_state(state)
    assert all(np.array_equal(other.draw(), e) for e in expected)


def source_loader(n: int, batch_size: int, seed: int = 0) -> DataLoader:
    x = np.random.default_rng(seed).standard_normal((n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return make_loader(x, y, batch_size=batch_size, seed=seed)


@pytest.mark.parametrize(("n", "batch_size"), [(600, 50), (1000, 3), (49, 7), (10, 10)])
def test_the_loader_takes_opacus_steps_at_opacus_sample_rate(n, batch_size):
    loader = source_loader(n, batch_size)
    ours, opacus = PoissonLoader.from_data_loader(loader), DPDataLoader.from_data_loader(loader)
    assert isinstance(ours, DPDataLoader)
    assert ours.sample_rate == opacus.sample_rate == 1 / len(loader)
    assert len(ours) == len(opacus) == len(list(ours))


def test_empty_batches_come_out_as_opacus_makes_them():
    loader = source_loader(4, 1)  # q = 1/4: an empty batch about a third of the time
    ours = PoissonLoader.from_data_loader(loader)
    seen_empty = False
    for _ in range(10):
        for x, y in ours:
            if len(x) == 0:
                seen_empty = True
                assert x.shape == (0, 6) and x.dtype == torch.float32
                assert y.shape == (0,) and y.dtype == torch.float32
    assert seen_empty
    # Opacus' own collate wrapper makes the same empty batch.
    assert [t.shape for t in DPDataLoader.from_data_loader(loader).collate_fn([])] == [
        t.shape for t in ours.collate_fn([])]


def test_private_training_keeps_the_sample_rate_steps_and_epsilon(split):
    model = dp.prepare_module(TabularMLP(split.n_features, (8,)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = make_loader(split.x_train, split.y_train, batch_size=64, seed=0)
    config = PrivacyConfig(target_epsilon=2.0)
    wrapped = dp.make_private(model=model, optimizer=optimizer, loader=loader, config=config,
                              epochs=2)
    assert isinstance(wrapped.loader, PoissonLoader)
    assert wrapped.loader.sample_rate == wrapped.sample_rate == 1 / len(loader)
    assert 2 * len(wrapped.loader) == wrapped.planned_steps
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for x, y in wrapped.loader:
        wrapped.optimizer.zero_grad(set_to_none=True)
        loss_fn(wrapped.module(x), y).backward()
        wrapped.optimizer.step()
    steps = len(wrapped.loader)
    assert wrapped.engine.accountant.history == [
        (wrapped.noise_multiplier, wrapped.sample_rate, steps)]
    assert wrapped.epsilon() == dp.epsilon_for(
        noise_multiplier=wrapped.noise_multiplier, sample_rate=wrapped.sample_rate,
        steps=steps, delta=wrapped.delta)
