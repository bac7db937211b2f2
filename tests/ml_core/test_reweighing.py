"""Reweighing (Kamiran & Calders): weights equal an independent pandas computation on the
training rows, and reweighing the planted-bias finance data by foreign_worker lowers the
model's demographic parity difference against the unmitigated model with the same seed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference

from ml_core.data import encode_and_split
from ml_core.fairness import sensitive_frame
from ml_core.mitigation import reweighing_weights
from ml_core.pipeline import run_training
from ml_core.spec import PrivacyConfig
from verticals.finance.demo_data import credit_applications
from verticals.registry import get_problem


def _problem():
    problem = get_problem("finance", "credit_risk")
    return problem, problem.spec


def test_weights_match_an_independent_pandas_computation():
    rng = np.random.default_rng(3)
    groups = pd.Series(rng.choice(["a", "b", "c"], size=500, p=[0.6, 0.3, 0.1]))
    y = (rng.random(500) < np.where(groups == "a", 0.2, 0.5)).astype(int)
    weights = reweighing_weights(groups, y)
    table = pd.DataFrame({"g": groups, "y": y})
    n = len(table)
    expected = table.apply(
        lambda row: (table.g.eq(row.g).sum() / n) * (table.y.eq(row.y).sum() / n)
        / (table.g.eq(row.g) & table.y.eq(row.y)).sum() * n, axis=1)
    np.testing.assert_allclose(weights, expected.to_numpy(), rtol=1e-6)
    # In the weighted data group and label are independent, and the weights average to 1.
    weighted = table.assign(w=weights).groupby(["g", "y"]).w.sum() / weights.sum()
    for (g, label), share in weighted.items():
        assert share == pytest.approx(table.g.eq(g).mean() * table.y.eq(label).mean())
    assert weights.mean() == pytest.approx(1.0)


@pytest.mark.slow
def test_reweighing_lowers_the_planted_parity_gap(tmp_path):
    problem, spec = _problem()
    frame = credit_applications(3000, 0)
    mapping = problem.sample_mapping
    train = dataclasses.replace(spec.train, epochs=6, patience=6, seed=0, device="cpu")
    off = PrivacyConfig(enabled=False)

    # The weights travel on the training rows only and equal the pandas computation there.
    split = encode_and_split(frame, mapping, train, target_rule=spec.target_rule)
    groups = sensitive_frame(frame.loc[split.ids_train], mapping, spec)["foreign_worker"]
    cells = pd.DataFrame({"g": groups.to_numpy(), "y": split.y_train})
    p_g = cells.g.map(cells.g.value_counts(normalize=True))
    p_y = cells.y.map(cells.y.value_counts(normalize=True))
    p_gy = cells.groupby(["g", "y"]).g.transform("size") / len(cells)
    np.testing.assert_allclose(reweighing_weights(groups, split.y_train),
                               (p_g * p_y / p_gy).to_numpy(), rtol=1e-6)

    plain = run_training(frame=frame, mapping=mapping, spec=spec, privacy=off, train=train,
                         artifact_dir=tmp_path / "plain")
    mitigated = run_training(
        frame=frame, mapping=mapping, spec=spec, privacy=off,
        train=dataclasses.replace(train, reweigh_attribute="foreign_worker"),
        artifact_dir=tmp_path / "reweighed")

    def gap(result):
        table = result.predictions
        return demographic_parity_difference(table.y_true, table.y_pred,
                                             sensitive_features=table.foreign_worker)

    before, after = gap(plain), gap(mitigated)
    assert before == pytest.approx(
        plain.fairness["foreign_worker"]["disparities"]["demographic_parity_difference"])
    assert after < before
    assert list(plain.predictions.row_id) == list(mitigated.predictions.row_id)
    assert any("reweighing" in note for note in mitigated.notes)


def test_private_training_with_weights_spends_the_same_epsilon():
    """Weights sit inside each row's per-sample gradient, which is clipped: the accountant's
    epsilon (noise, sampling rate, steps) is that of the unweighted run."""
    from ml_core.trainer import train_model

    problem, spec = _problem()
    frame = credit_applications(600, 1)
    train = dataclasses.replace(spec.train, epochs=2, patience=2, seed=0, device="cpu")
    split = encode_and_split(frame, problem.sample_mapping, train,
                             target_rule=spec.target_rule)
    groups = sensitive_frame(frame.loc[split.ids_train], problem.sample_mapping,
                             spec)["foreign_worker"]
    weights = reweighing_weights(groups, split.y_train)
    privacy = dataclasses.replace(spec.privacy, enabled=True, target_epsilon=2.0)
    plain = train_model(split=split, train=train, privacy=privacy)
    weighted = train_model(split=split, train=train, privacy=privacy, sample_weight=weights)
    assert weighted.privacy["epsilon"] == pytest.approx(plain.privacy["epsilon"])
    assert weighted.privacy["max_grad_norm"] == plain.privacy["max_grad_norm"]
    assert all(np.isfinite(r["loss"]) for r in weighted.history)
    with pytest.raises(ValueError):
        train_model(split=split, train=train, privacy=None, sample_weight=weights[:-1])
