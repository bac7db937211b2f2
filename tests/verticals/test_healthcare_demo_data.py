"""The healthcare and complaint generators plant the disparities their docstrings document."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from verticals.finance.complaints import complaint_narratives
from verticals.healthcare.demo_data import (
    PLANTED_ACCESS_LOG_ODDS,
    clinical_log_odds,
    encounters,
    triage_notes,
)


def test_readmission_planted_access_term_is_recovered() -> None:
    frame = encounters(20_000, 0)
    low_access = frame["insurance"].isin(["medicaid", "self_pay"]).to_numpy(dtype=float)
    x = np.column_stack([clinical_log_odds(frame), low_access])
    y = (frame["readmitted"] == "yes").to_numpy()
    coef = LogisticRegression(C=1e6, max_iter=1000).fit(x, y).coef_[0]
    assert coef[0] == pytest.approx(1.0, abs=0.15)
    assert coef[1] == pytest.approx(PLANTED_ACCESS_LOG_ODDS, abs=0.15)
    rates = frame.assign(y=y).groupby("insurance")["y"].mean()
    assert rates["medicaid"] > rates["private"] + 0.15
    assert 0.15 < y.mean() < 0.3


def test_readmission_without_the_planted_term_has_a_smaller_gap() -> None:
    planted = encounters(20_000, 1)
    fair = encounters(20_000, 1, planted_access_log_odds=0.0)

    def gap(frame) -> float:
        y = frame["readmitted"] == "yes"
        low = frame["insurance"].isin(["medicaid", "self_pay"])
        return float(y[low].mean() - y[~low].mean())

    assert gap(planted) > gap(fair) + 0.08


def test_triage_notes_under_triage_women_with_emergencies() -> None:
    planted = triage_notes(5_000, 0)
    fair = triage_notes(5_000, 0, planted_under_triage=0.0)
    emergent = (fair["urgency"] == "emergent").groupby(fair["sex"]).mean()
    recorded = (planted["urgency"] == "emergent").groupby(planted["sex"]).mean()
    assert recorded["female"] < emergent["female"] - 0.04
    assert recorded["male"] == pytest.approx(emergent["male"])
    assert set(planted["urgency"]) == {"emergent", "urgent", "routine"}
    assert planted["note"].str.len().between(30, 300).all()


def test_complaints_hedge_older_consumers_negative_narratives() -> None:
    frame = complaint_narratives(5_000, 0)
    hedged = frame["narrative"].str.contains("grateful|wonder|Perhaps|appreciate some help")
    negative = frame["sentiment"] == "negative"
    share = hedged[negative].groupby(frame["older_consumer"][negative]).mean()
    assert share["yes"] > share["no"] + 0.3
    assert set(frame["sentiment"]) == {"negative", "neutral", "positive"}
