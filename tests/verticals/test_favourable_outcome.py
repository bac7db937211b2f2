"""Each problem declares its favourable outcome, and the four-fifths rule, its chart and its
sentences use it: for credit risk a high "selection rate" means predicted to default, so the
group flagged is the one least often predicted *not* to default."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_ratio

from audits.report_display import attribute_sections, policy_rows
from ml_core import fairness
from ml_core.spec import FavourableOutcome
from verticals.registry import all_problems, get_problem


@pytest.mark.parametrize("problem", [p for _, p in all_problems()], ids=lambda p: p.spec.key)
def test_every_problem_declares_its_favourable_outcome(problem):
    favourable = problem.spec.fairness.favourable
    assert isinstance(favourable, FavourableOutcome)
    assert favourable.text and favourable.text != FavourableOutcome().text


def _credit_audit() -> tuple[dict, np.ndarray, np.ndarray, pd.Series]:
    # Group "a" is predicted to default 10 % of the time, "b" 50 %: "b" is the one harmed.
    groups = pd.Series(["a"] * 100 + ["b"] * 100)
    y_pred = np.array([1] * 10 + [0] * 90 + [1] * 50 + [0] * 50)
    y_true = np.array(([1, 0] * 50) * 2)
    policy = get_problem("finance", "credit_risk").spec.fairness
    report = fairness.audit(y_true=y_true, y_pred=y_pred, sensitive=groups.to_frame("g"),
                            policy=policy)
    return report, y_true, y_pred, groups


def test_the_four_fifths_ratio_compares_favourable_shares():
    report, y_true, y_pred, groups = _credit_audit()
    part = report["g"]
    assert part["by_group"]["a"]["favourable_rate"] == pytest.approx(0.9)
    assert part["by_group"]["b"]["favourable_rate"] == pytest.approx(0.5)
    # fairlearn on the favourable decision (not predicted to default) is the reference.
    expected = demographic_parity_ratio(y_true, 1 - y_pred, sensitive_features=groups)
    assert part["disparities"]["demographic_parity_ratio"] == pytest.approx(expected)
    assert expected == pytest.approx(0.5 / 0.9)


def test_the_chart_flags_the_least_favoured_group_and_names_the_outcome():
    report, *_ = _credit_audit()
    policy = {"min_disparate_impact_ratio": 0.8,
              "favourable": {"positive": False, "text": "predicted not to default"}}
    [section] = attribute_sections(report=report, nonprivate_report=None, policy=policy)
    chart = section.charts[0]
    assert "Share predicted not to default by g" in chart
    flagged = re.findall(r'<rect class="bar flagged"[^>]*><title>(\w+):', chart)
    assert flagged == ["b"]
    assert ("Favourable outcome", "predicted not to default") in policy_rows(policy)
