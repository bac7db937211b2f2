"""Every problem's defaults can pass its own promotion gates: a problem that trains without
privacy by default (machine failure prediction) does not require privacy to be promoted,
and its 0.2 disparate-impact threshold is not called "the four-fifths rule"."""

from __future__ import annotations

import pytest

from audits.report_display import attribute_sections
from governance.registry import gate_defaults
from verticals import registry


@pytest.mark.parametrize("problem", [p for _, p in registry.all_problems()],
                         ids=lambda p: p.spec.key)
def test_privacy_gate_follows_the_problems_own_default(problem):
    assert gate_defaults(problem.spec)["require_privacy"] is problem.spec.privacy.enabled


def test_failure_prediction_trains_and_gates_without_privacy():
    spec = registry.get_problem("manufacturing", "failure_prediction").spec
    assert spec.privacy.enabled is False
    assert gate_defaults(spec)["require_privacy"] is False


def _ratio_report(threshold: float) -> dict:
    group = {"count": 100, "selection_rate": 0.3, "tpr": 0.5, "fpr": 0.1, "accuracy": 0.8}
    return {"Type": {"by_group": {"L": group, "M": group}, "disparities": {},
                     "checks": [{"name": "four_fifths_rule", "value": 1.0,
                                 "threshold": threshold, "passed": True}],
                     "judged_groups": ["L", "M"], "passed": True}}


def test_only_a_0_8_ratio_is_labelled_the_four_fifths_rule():
    spec = registry.get_problem("manufacturing", "failure_prediction").spec
    threshold = spec.fairness.min_disparate_impact_ratio
    assert threshold == 0.2
    [loose] = attribute_sections(report=_ratio_report(threshold), nonprivate_report=None,
                                 policy={"min_disparate_impact_ratio": threshold})
    assert "four-fifths" not in loose.checks[0]["label"]
    [strict] = attribute_sections(report=_ratio_report(0.8), nonprivate_report=None,
                                  policy={"min_disparate_impact_ratio": 0.8})
    assert "four-fifths" in strict.checks[0]["label"]
