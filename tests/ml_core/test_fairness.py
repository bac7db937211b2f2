"""Fairness numbers cross-checked against fairlearn on the same arrays."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from ml_core.fairness import audit, band, passed, sensitive_frame
from ml_core.spec import Banding, ColumnMapping, FairnessPolicy, ProblemSpec, TaskType

AGE_BANDS = Banding(column_hint="age", edges=(25, 35, 50))
TOL = 1e-12


def _random_case(seed: int, n: int = 1000):
    rng = np.random.default_rng(seed)
    age = pd.Series(rng.integers(18, 80, n), name="age")
    sensitive = pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n, p=[0.3, 0.7]),
            "age": band(age, AGE_BANDS),
            "foreign": rng.choice(["A201", "A202", "A203"], n),
        }
    )
    y_true = rng.integers(0, 2, n)
    # Predictions depend on the group so that disparities are not all near zero.
    p = 0.3 + 0.3 * (sensitive["sex"] == "male").to_numpy()
    y_pred = (rng.random(n) < p).astype(int)
    return y_true, y_pred, sensitive


def _fairlearn_reference(y_true, y_pred, groups):
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "accuracy": accuracy_score,
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=groups,
    )
    counts = pd.Series(groups).value_counts()
    disparities = {
        "demographic_parity_difference": demographic_parity_difference(
            y_true, y_pred, sensitive_features=groups
        ),
        "demographic_parity_ratio": demographic_parity_ratio(
            y_true, y_pred, sensitive_features=groups
        ),
        "equalized_odds_difference": equalized_odds_difference(
            y_true, y_pred, sensitive_features=groups
        ),
    }
    return frame.by_group, counts, disparities


@pytest.mark.parametrize("seed", [0, 1])
def test_every_number_matches_fairlearn(seed):
    y_true, y_pred, sensitive = _random_case(seed)
    report = audit(y_true=y_true, y_pred=y_pred, sensitive=sensitive, policy=FairnessPolicy())
    assert set(report) == {"sex", "age", "foreign"}
    for attribute in sensitive.columns:
        groups = sensitive[attribute].to_numpy()
        by_group, counts, disparities = _fairlearn_reference(y_true, y_pred, groups)
        ours = report[attribute]
        assert set(ours["by_group"]) == set(by_group.index)
        assert ours["judged_groups"] == sorted(by_group.index)
        for group, row in by_group.iterrows():
            mine = ours["by_group"][group]
            assert mine["count"] == counts[group]
            for metric in ("selection_rate", "tpr", "fpr", "accuracy"):
                assert mine[metric] == pytest.approx(row[metric], abs=TOL), (group, metric)
        for name, value in disparities.items():
            assert ours["disparities"][name] == pytest.approx(value, abs=TOL), name


def test_small_groups_are_reported_but_not_judged():
    rng = np.random.default_rng(5)
    n = 600
    groups = np.array(["big_a"] * 300 + ["big_b"] * 290 + ["tiny"] * 10)
    y_true = rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, n)
    y_pred[-10:] = 1  # the tiny group would dominate the disparities if it were judged
    report = audit(
        y_true=y_true, y_pred=y_pred, sensitive=pd.DataFrame({"g": groups}),
        policy=FairnessPolicy(min_group_size=20),
    )["g"]
    assert report["by_group"]["tiny"]["count"] == 10
    assert report["judged_groups"] == ["big_a", "big_b"]
    assert report["insufficient_groups"] is False
    keep = groups != "tiny"
    _, _, disparities = _fairlearn_reference(y_true[keep], y_pred[keep], groups[keep])
    for name, value in disparities.items():
        assert report["disparities"][name] == pytest.approx(value, abs=TOL), name


def test_fewer_than_two_judged_groups_pass_with_a_note():
    groups = np.array(["a"] * 50 + ["b"] * 5)
    y_true = np.r_[np.zeros(25, int), np.ones(25, int), np.ones(5, int)]
    y_pred = np.r_[np.zeros(50, int), np.ones(5, int)]  # a large gap, on a tiny group
    report = audit(
        y_true=y_true, y_pred=y_pred, sensitive=pd.DataFrame({"g": groups}),
        policy=FairnessPolicy(),
    )
    attribute = report["g"]
    assert attribute["insufficient_groups"] is True
    assert attribute["passed"] is True
    assert "20" in attribute["note"]
    assert attribute["disparities"]["demographic_parity_difference"] == 1.0
    assert attribute["by_group"]["b"]["fpr"] is None  # group b has no negatives
    assert passed(report)


def test_checks_pass_and_fail_against_the_policy():
    groups = np.array(["a"] * 100 + ["b"] * 100)
    y_true = np.tile([0, 1], 100)
    fair_pred = np.tile([0, 1, 1, 0], 50)
    fair = audit(
        y_true=y_true, y_pred=fair_pred, sensitive=pd.DataFrame({"g": groups}),
        policy=FairnessPolicy(),
    )
    assert passed(fair)
    assert [c["passed"] for c in fair["g"]["checks"]] == [True, True, True]

    unfair_pred = np.r_[np.ones(100, int), np.tile([1, 0, 0, 0, 0], 20)]
    unfair = audit(
        y_true=y_true, y_pred=unfair_pred, sensitive=pd.DataFrame({"g": groups}),
        policy=FairnessPolicy(),
    )
    checks = {c["name"]: c for c in unfair["g"]["checks"]}
    assert checks["four_fifths_rule"] == {
        "name": "four_fifths_rule", "value": 0.2, "threshold": 0.8, "passed": False,
    }
    assert checks["demographic_parity_difference"]["passed"] is False
    assert checks["equalized_odds_difference"]["passed"] is False
    assert not unfair["g"]["passed"]
    assert not passed(unfair)
    # A looser policy lets the same predictions through.
    loose = FairnessPolicy(
        min_disparate_impact_ratio=0.1,
        max_demographic_parity_difference=0.9,
        max_equalized_odds_difference=0.9,
    )
    relaxed = audit(
        y_true=y_true, y_pred=unfair_pred, sensitive=pd.DataFrame({"g": groups}), policy=loose
    )
    assert passed(relaxed)


def test_report_is_plain_json():
    y_true, y_pred, sensitive = _random_case(3, n=300)
    report = audit(y_true=y_true, y_pred=y_pred, sensitive=sensitive, policy=FairnessPolicy())
    assert json.loads(json.dumps(report)) == report
    for attribute in report.values():
        for value in attribute["disparities"].values():
            assert type(value) is float


def test_zero_selection_everywhere_gives_ratio_one():
    report = audit(
        y_true=np.tile([0, 1], 50), y_pred=np.zeros(100, int),
        sensitive=pd.DataFrame({"g": ["a"] * 50 + ["b"] * 50}), policy=FairnessPolicy(),
    )
    assert report["g"]["disparities"]["demographic_parity_ratio"] == 1.0


def test_band_edges():
    ages = pd.Series([24.9, 25, 34, 34.9, 35, 49, 50, 90, None])
    assert band(ages, AGE_BANDS).tolist() == [
        "<25", "25-34", "25-34", "25-34", "35-49", "35-49", "50+", "50+", "missing",
    ]


def test_band_quartiles_without_banding_and_plain_values():
    quartiles = band(pd.Series(range(100)), None)
    assert quartiles.value_counts().to_dict() == {"<25": 25, "25-49": 25, "50-74": 25, "75+": 25}
    assert band(pd.Series([1.0, 2.0, None, 1.0]), None).tolist() == ["1", "2", "missing", "1"]
    assert band(pd.Series(["A91", " A92", None]), None).tolist() == ["A91", "A92", "missing"]
    assert band(pd.Series([True, False]), None).tolist() == ["True", "False"]


def test_sensitive_frame_bands_by_spec():
    spec = ProblemSpec(
        key="k", name="n", description="d", task_type=TaskType.BINARY_CLASSIFICATION, hints=(),
        banding=(AGE_BANDS,),
    )
    frame = pd.DataFrame(
        {"Age_years": [22, 40, None], "sex": ["f", None, "m"], "x": [1, 2, 3]}, index=[7, 8, 9]
    )
    mapping = ColumnMapping(target="x", sensitive=("Age_years", "sex"))
    banded = sensitive_frame(frame, mapping, spec)
    assert list(banded.columns) == ["Age_years", "sex"]
    assert list(banded.index) == [7, 8, 9]
    assert banded["Age_years"].tolist() == ["<25", "35-49", "missing"]
    assert banded["sex"].tolist() == ["f", "missing", "m"]


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="same length"):
        audit(
            y_true=np.zeros(3), y_pred=np.zeros(3), sensitive=pd.DataFrame({"g": ["a", "b"]}),
            policy=FairnessPolicy(),
        )
