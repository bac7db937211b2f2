"""The empirical privacy audit: its statistic against scipy's beta quantiles, a private
training that stays below its claim, and a broken one (no clipping, no noise) caught."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta

from ml_core import privacy_audit as pa
from ml_core.data import encode_and_split
from ml_core.spec import ColumnMapping, PrivacyConfig, TrainConfig


@pytest.mark.parametrize(("k", "n"), [(0, 20), (3, 20), (19, 20), (20, 20), (57, 128)])
@pytest.mark.parametrize("alpha", [0.025, 1e-4])
def test_clopper_pearson_matches_beta_quantiles(k: int, n: int, alpha: float) -> None:
    lower = 0.0 if k == 0 else beta.ppf(alpha, k, n - k + 1)
    upper = 1.0 if k == n else beta.ppf(1 - alpha, k + 1, n - k)
    assert pa.clopper_pearson_lower(k, n, alpha) == pytest.approx(lower, abs=1e-9)
    assert pa.clopper_pearson_upper(k, n, alpha) == pytest.approx(upper, abs=1e-9)


def _reference_bound(scores, member, delta, confidence, quantiles) -> float:
    """The same statistic written out independently (scipy's beta quantiles)."""
    members, others = scores[member], scores[~member]
    thresholds = sorted(set(np.quantile(scores, np.arange(1, quantiles) / quantiles,
                                        method="inverted_cdf")))
    alpha = (1 - confidence) / (4 * len(thresholds))
    best = 0.0
    for t in thresholds:
        tp, fp = int((members >= t).sum()), int((others >= t).sum())
        p, n = len(members), len(others)
        for hits, hit_total, misses, miss_total in ((tp, p, fp, n), (n - fp, n, p - tp, p)):
            low = 0.0 if hits == 0 else beta.ppf(alpha, hits, hit_total - hits + 1)
            up = 1.0 if misses == miss_total else beta.ppf(1 - alpha, misses + 1,
                                                            miss_total - misses)
            if low - delta > 0:
                best = max(best, math.log((low - delta) / up))
    return best


def test_epsilon_lower_bound_matches_an_independent_computation() -> None:
    rng = np.random.default_rng(0)
    member = rng.random(200) < 0.5
    scores = rng.normal(size=200) + 2.0 * member  # a strong membership signal
    bound = pa.epsilon_lower_bound(scores, member, delta=1e-5)
    reference = _reference_bound(scores, member, 1e-5, 0.95, pa.THRESHOLD_QUANTILES)
    assert bound.epsilon_lower_bound == pytest.approx(reference, rel=1e-6)
    assert bound.epsilon_lower_bound > 0.5
    # No signal: no bound; perfect separation: the largest bound these counts allow.
    assert pa.epsilon_lower_bound(rng.normal(size=200), member).epsilon_lower_bound < 0.5
    perfect = pa.epsilon_lower_bound(member.astype(float), member)
    assert perfect.epsilon_lower_bound == pytest.approx(
        _reference_bound(member.astype(float), member, 0.0, 0.95, pa.THRESHOLD_QUANTILES))
    with pytest.raises(ValueError):
        pa.epsilon_lower_bound(scores, np.ones(200, dtype=bool))


def _tabular(n_rows: int, seed: int = 0, n_features: int = 20):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, n_features))
    logits = x[:, 0] - 0.8 * x[:, 1] + 0.5 * x[:, 2]
    frame = {f"f{i}": x[:, i] for i in range(n_features)}
    frame["group"] = rng.choice(["a", "b", "c"], n_rows)
    frame["y"] = np.where(rng.random(n_rows) < 1 / (1 + np.exp(-logits)), "yes", "no")
    import pandas as pd

    return pd.DataFrame(frame), ColumnMapping(target="y", positive_label="yes")


def test_canaries_are_planted_with_a_fair_coin() -> None:
    frame, mapping = _tabular(200)
    split = encode_and_split(frame, mapping, TrainConfig(seed=0))
    canaries = pa.make_canaries(split, k=64, seed=1)
    assert canaries.x.shape == (64, split.n_features) and 0 < canaries.member.sum() < 64
    audited = pa.with_canaries(split, canaries)
    assert len(audited.y_train) == len(split.y_train) + canaries.member.sum()
    np.testing.assert_array_equal(audited.x_train[len(split.y_train):],
                                  canaries.x[canaries.member])
    assert len({tuple(row) for row in canaries.x}) == 64  # each canary is its own point


@pytest.mark.slow
def test_private_training_stays_below_its_claimed_epsilon() -> None:
    frame, mapping = _tabular(240)
    train = TrainConfig(epochs=8, batch_size=32, learning_rate=1e-2, patience=100, seed=0)
    split = encode_and_split(frame, mapping, train)
    result = pa.audit_tabular(split, train=train, canaries=128, seed=0,
                              privacy=PrivacyConfig(enabled=True, target_epsilon=1.0))
    assert result.privacy["enabled"] and 0 < result.claimed_epsilon <= 1.0 + 1e-6
    assert result.bound.epsilon_lower_bound < result.claimed_epsilon
    assert result.consistent
    summary = result.to_dict()
    assert summary["confidence"] == 0.95 and "Clopper-Pearson" in summary["method"]


@pytest.mark.slow
def test_a_broken_configuration_is_caught() -> None:
    # No clipping and no noise (plain training), many epochs, little data: the model
    # memorises its canaries. Claimed as epsilon 1, the audit proves it leaks more.
    # (The audit trains the model as a run releases it, its last epoch: seeded here.)
    frame, mapping = _tabular(200)
    train = TrainConfig(epochs=100, batch_size=32, learning_rate=1e-3, patience=1000, seed=2)
    split = encode_and_split(frame, mapping, train)
    result = pa.audit_tabular(split, train=train, privacy=None, canaries=256, seed=2,
                              claimed_epsilon=1.0)
    assert result.privacy["enabled"] is False
    assert result.bound.epsilon_lower_bound > 1.0
    assert not result.consistent
    assert result.bound.form == "tnr/fnr"  # no member missed, many non-members left out
