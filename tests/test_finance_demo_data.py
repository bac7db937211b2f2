"""The finance demo data: realistic columns and the planted, documented label bias."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from verticals.finance.demo_data import (
    COLUMNS,
    PLANTED_BIAS_LOG_ODDS,
    credit_applications,
    financial_log_odds,
)

LARGE = 20_000


@pytest.fixture(scope="module")
def large() -> pd.DataFrame:
    return credit_applications(LARGE, 3)


@pytest.fixture(scope="module")
def large_unbiased() -> pd.DataFrame:
    return credit_applications(LARGE, 3, planted_bias_log_odds=0.0)


def default_gap(frame: pd.DataFrame, column: str, group: str) -> float:
    inside = frame[column] == group
    return float(frame.loc[inside, "default"].mean() - frame.loc[~inside, "default"].mean())


def test_columns_and_types() -> None:
    frame = credit_applications(400, 0)
    assert tuple(frame.columns) == COLUMNS
    assert frame["applicant_id"].is_unique
    assert set(frame["default"]) == {0, 1}
    assert set(frame["sex"]) == {"female", "male"}
    assert set(frame["foreign_worker"]) == {"yes", "no"}
    assert frame["age"].between(19, 75).all()
    assert (frame["income"] > 0).all() and (frame["loan_amount"] > 0).all()
    assert frame["duration_months"].between(6, 60).all()
    assert (frame["employment_years"] <= frame["age"] - 18).all()
    assert frame.notna().all().all()


def test_small_samples_still_have_auditable_groups() -> None:
    # The contract battery trains on a few hundred rows: each audited group needs >= 20.
    frame = credit_applications(400, 0)
    assert frame["foreign_worker"].value_counts().min() >= 20 * 3
    assert frame["sex"].value_counts().min() >= 20 * 3
    assert 0.2 <= frame["default"].mean() <= 0.45


def test_planted_gap_is_visible_in_the_raw_labels(large, large_unbiased) -> None:
    # Docstring: foreign workers 0.52 vs 0.22 (gap 0.29); 0.10 of it from finances.
    assert 0.25 <= default_gap(large, "foreign_worker", "yes") <= 0.33
    assert 0.06 <= default_gap(large_unbiased, "foreign_worker", "yes") <= 0.14
    planted = (default_gap(large, "foreign_worker", "yes")
               - default_gap(large_unbiased, "foreign_worker", "yes"))
    assert 0.15 <= planted <= 0.23
    # The same applicants: only the labels differ.
    features = [c for c in COLUMNS if c != "default"]
    pd.testing.assert_frame_equal(large[features], large_unbiased[features])


def test_planted_bias_is_independent_of_financial_risk(large) -> None:
    # Regressing the labels on the true financial log-odds and the group recovers the
    # generating coefficients: 1 for finances, PLANTED_BIAS_LOG_ODDS for foreign workers.
    design = np.column_stack(
        [financial_log_odds(large), (large["foreign_worker"] == "yes").to_numpy(float)]
    )
    model = LogisticRegression(C=1e6, max_iter=1000).fit(design, large["default"])
    finance_coef, bias_coef = model.coef_[0]
    assert finance_coef == pytest.approx(1.0, abs=0.12)
    assert bias_coef == pytest.approx(PLANTED_BIAS_LOG_ODDS, abs=0.15)
    assert model.intercept_[0] == pytest.approx(0.0, abs=0.12)


def test_no_planted_bias_for_sex(large) -> None:
    assert abs(default_gap(large, "sex", "female")) < 0.05


def test_financial_columns_are_proxies_for_foreign_workers(large) -> None:
    foreign = large["foreign_worker"] == "yes"
    assert large.loc[foreign, "employment_years"].mean() < 0.7 * large.loc[
        ~foreign, "employment_years"].mean()
    assert large.loc[foreign, "income"].median() < large.loc[~foreign, "income"].median()
    own = large["housing"] == "own"
    assert own[foreign].mean() < own[~foreign].mean() - 0.1


def test_same_seed_same_table_other_seed_other_table() -> None:
    pd.testing.assert_frame_equal(credit_applications(50, 5), credit_applications(50, 5))
    assert not credit_applications(50, 5).equals(credit_applications(50, 6))
    with pytest.raises(ValueError):
        credit_applications(0, 1)


@pytest.mark.slow
def test_an_unaware_model_learns_the_planted_gap_through_proxies(tmp_path) -> None:
    # The model never sees foreign_worker (sensitive columns are not features), yet its
    # scores separate the groups more with the planted bias than without it.
    import dataclasses

    from ml_core.pipeline import run_training
    from verticals.registry import get_problem

    problem = get_problem("finance", "credit_risk")
    spec = problem.spec
    gaps = {}
    for bias in (PLANTED_BIAS_LOG_ODDS, 0.0):
        result = run_training(
            frame=credit_applications(2000, 12, planted_bias_log_odds=bias),
            mapping=problem.sample_mapping,
            spec=spec,
            privacy=dataclasses.replace(spec.privacy, enabled=False),
            train=dataclasses.replace(spec.train, epochs=8),
            artifact_dir=tmp_path / str(bias),
        )
        scores = result.predictions.groupby("foreign_worker")["y_score"].mean()
        gaps[bias] = scores["yes"] - scores["no"]
        if bias:
            rates = result.fairness["foreign_worker"]["by_group"]
            assert rates["yes"]["selection_rate"] > rates["no"]["selection_rate"]
    assert gaps[PLANTED_BIAS_LOG_ODDS] > 0.09
    assert gaps[PLANTED_BIAS_LOG_ODDS] > gaps[0.0] + 0.03
