"""Mitigation picks the worst *failing* attribute (largest shortfall of a failed check, never
one that passed or was not judged), warns when it makes disparities worse, and shows the
report's own numbers as "original"."""

from __future__ import annotations

import pytest

from governance.mitigation import _worst_attribute, disparity_changes


def _part(*, checks, disparities, passed, insufficient=False):
    return {"by_group": {}, "checks": checks, "disparities": disparities, "passed": passed,
            "insufficient_groups": insufficient}


def _check(name, value, threshold, passed):
    return {"name": name, "value": value, "threshold": threshold, "passed": passed}


REPORT = {
    # Barely fails equalised odds (0.16 vs 0.15), but its parity ratio is 0.98: the old
    # choice took the largest raw disparity value, the ratio, and picked this one.
    "sex": _part(checks=[_check("four_fifths_rule", 0.98, 0.8, True),
                         _check("equalized_odds_difference", 0.16, 0.15, False)],
                 disparities={"demographic_parity_ratio": 0.98,
                              "equalized_odds_difference": 0.16}, passed=False),
    # Fails the four-fifths rule by 0.3.
    "foreign_worker": _part(checks=[_check("four_fifths_rule", 0.5, 0.8, False)],
                            disparities={"demographic_parity_ratio": 0.5,
                                         "demographic_parity_difference": 0.3}, passed=False),
    # Groups too small: its failing checks are information only.
    "age": _part(checks=[_check("four_fifths_rule", 0.1, 0.8, False)],
                 disparities={"demographic_parity_ratio": 0.1}, passed=True, insufficient=True),
    "housing": _part(checks=[_check("four_fifths_rule", 0.9, 0.8, True)],
                     disparities={"demographic_parity_ratio": 0.9}, passed=True),
}


def test_the_worst_failing_attribute_is_the_one_furthest_outside_its_threshold():
    assert _worst_attribute(REPORT) == "foreign_worker"
    only_passed = {k: REPORT[k] for k in ("age", "housing")}
    with pytest.raises(ValueError, match="no judged attribute"):
        _worst_attribute(only_passed)


def test_a_mitigation_that_worsens_every_disparity_is_flagged():
    original = {"sex": {"disparities": {"demographic_parity_difference": 0.12,
                                        "demographic_parity_ratio": 0.7,
                                        "equalized_odds_difference": 0.1}}}
    worse = {"sex": {"disparities": {"demographic_parity_difference": 0.2,
                                     "demographic_parity_ratio": 0.6,
                                     "equalized_odds_difference": 0.18}}}
    changes = disparity_changes(original=original, mitigated=worse, attribute="sex")
    assert len(changes["worse"]) == 3 and changes["better"] == []
    assert "made every disparity of sex worse" in changes["warning"]
    mixed = {"sex": {"disparities": {"demographic_parity_difference": 0.05,
                                     "demographic_parity_ratio": 0.9,
                                     "equalized_odds_difference": 0.18}}}
    changes = disparity_changes(original=original, mitigated=mixed, attribute="sex")
    assert changes["worse"] == ["equalized odds difference"]
    assert changes["warning"].startswith("This mitigation made some disparities")
    better = disparity_changes(original=original, mitigated=original, attribute="sex")
    assert better["warning"] == ""


@pytest.mark.django_db
def test_the_model_page_shows_the_warning(make_model, reviewer, client):
    from governance.models import Mitigation

    model = make_model(parity=0.2)
    original = model.run.fairness_report.report
    mitigated = {"sex": {**original["sex"], "disparities": {
        k: v * 1.5 for k, v in original["sex"]["disparities"].items()
        if k != "demographic_parity_ratio"}}}
    Mitigation.objects.create(
        organisation=model.organisation, model_version=model, method="threshold_optimizer",
        constraint="demographic_parity", attribute="sex", created_by=reviewer,
        result={"original": {"fairness": original, "metrics": {}, "passed": False},
                "mitigated": {"fairness": mitigated, "metrics": {}, "passed": False},
                "changes": disparity_changes(original=original, mitigated=mitigated,
                                             attribute="sex")})
    client.force_login(reviewer)
    page = client.get(f"/governance/models/{model.pk}/").content.decode()
    assert 'data-field="mitigation-warning"' in page
    assert "made every disparity of sex worse" in page
