"""Group metrics for regression/score tasks, cross-checked with pandas groupby and sklearn."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score

from ml_core.group_metrics import passed, regression_by_group, score_by_group


@pytest.fixture
def regression_data():
    rng = np.random.default_rng(0)
    n = 400
    sex = rng.choice(["F", "M"], size=n)
    band = rng.choice(["<25", "25-49", "50+"], size=n)
    y_true = rng.normal(10, 3, size=n)
    noise = np.where(sex == "F", 2.0, 1.0)
    y_pred = y_true + rng.normal(0.3, 1, size=n) * noise
    sensitive = pd.DataFrame({"sex": sex, "age": band})
    return y_true, y_pred, sensitive


def test_regression_by_group_matches_pandas_and_sklearn(regression_data):
    y_true, y_pred, sensitive = regression_data
    report = regression_by_group(y_true=y_true, y_pred=y_pred, sensitive=sensitive, kind="personal")
    assert set(report) == {"sex", "age"}
    frame = sensitive.assign(t=y_true, p=y_pred, e=y_pred - y_true)
    for attr in ("sex", "age"):
        grouped = frame.groupby(attr)
        for group, rows in grouped:
            got = report[attr]["by_group"][str(group)]
            assert got["count"] == len(rows)
            assert got["mae"] == pytest.approx(mean_absolute_error(rows.t, rows.p))
            assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(rows.t, rows.p)))
            assert got["bias"] == pytest.approx(rows.e.mean())
        maes = grouped.apply(lambda g: (g.p - g.t).abs().mean())
        disp = report[attr]["disparities"]
        assert disp["mae_ratio"] == pytest.approx(maes.max() / maes.min())
        assert disp["mae_difference"] == pytest.approx(maes.max() - maes.min())
        assert disp["max_abs_bias"] == pytest.approx(grouped.e.mean().abs().max())
        assert report[attr]["kind"] == "personal"
    # F's error is doubled: the MAE ratio is near 2 and fails the default 1.25 check.
    assert report["sex"]["disparities"]["worst_group"] == "F"
    assert not report["sex"]["passed"]
    assert not passed(report)


def test_regression_equal_groups_pass_and_json_ready(regression_data):
    import json

    y_true, _, sensitive = regression_data
    y_pred = y_true + 1.0
    report = regression_by_group(
        y_true=y_true, y_pred=y_pred, sensitive=sensitive, kind="operational"
    )
    assert passed(report)
    assert report["age"]["disparities"]["mae_ratio"] == pytest.approx(1.0)
    json.dumps(report)


def test_small_groups_reported_not_judged():
    y_true = np.zeros(12)
    y_pred = np.r_[np.zeros(10), np.full(2, 5.0)]
    sensitive = pd.DataFrame({"g": ["a"] * 10 + ["b"] * 2})
    report = regression_by_group(
        y_true=y_true, y_pred=y_pred, sensitive=sensitive, min_group_size=5
    )
    assert report["g"]["by_group"]["b"]["mae"] == 5.0
    assert report["g"]["insufficient_groups"] and report["g"]["passed"]


def test_missing_labels_and_bad_inputs():
    report = regression_by_group(
        y_true=np.ones(3), y_pred=np.ones(3), sensitive=pd.DataFrame({"g": ["a", None, "a"]})
    )
    assert set(report["g"]["by_group"]) == {"a", "missing"}
    with pytest.raises(ValueError):
        regression_by_group(
            y_true=np.ones(3), y_pred=np.ones(2), sensitive=pd.DataFrame({"g": list("abc")})
        )
    with pytest.raises(ValueError):
        regression_by_group(
            y_true=np.ones(3),
            y_pred=np.ones(3),
            sensitive=pd.DataFrame({"g": list("abc")}),
            kind="other",
        )


def test_score_by_group_auc_matches_sklearn_per_group():
    rng = np.random.default_rng(1)
    n = 600
    group = rng.choice(["x", "y", "z"], size=n)
    y = rng.integers(0, 2, size=n)
    strength = np.select([group == "x", group == "y"], [2.0, 1.0], 0.3)
    score = y * strength + rng.normal(size=n)
    sensitive = pd.DataFrame({"group": group})
    report = score_by_group(
        y_true=y, y_score=score, sensitive=sensitive, metric=roc_auc_score, name="auc"
    )
    aucs = {}
    for g in ("x", "y", "z"):
        mask = group == g
        aucs[g] = roc_auc_score(y[mask], score[mask])
        assert report["group"]["by_group"][g]["auc"] == pytest.approx(aucs[g])
        assert report["group"]["by_group"][g]["count"] == int(mask.sum())
    disp = report["group"]["disparities"]
    assert disp["auc_ratio"] == pytest.approx(min(aucs.values()) / max(aucs.values()))
    assert disp["auc_difference"] == pytest.approx(max(aucs.values()) - min(aucs.values()))
    assert disp["worst_group"] == "z" and disp["best_group"] == "x"


def test_score_by_group_mean_of_per_user_values_and_undefined_groups():
    per_user_ndcg = np.array([1.0, 0.5, 0.0, 0.2, 0.4])
    sensitive = pd.DataFrame({"g": ["a", "a", "b", "b", "b"]})
    report = score_by_group(
        y_true=np.zeros(5),
        y_score=per_user_ndcg,
        sensitive=sensitive,
        metric=lambda _, s: float(np.mean(s)),
        name="ndcg@10",
    )
    assert report["g"]["by_group"]["a"]["ndcg@10"] == pytest.approx(0.75)
    assert report["g"]["by_group"]["b"]["ndcg@10"] == pytest.approx(0.2)
    assert report["g"]["disparities"]["ndcg@10_ratio"] == pytest.approx(0.2 / 0.75)
    assert not passed(report)
    # A group holding one class only has no AUC: None, and not judged.
    one_class = score_by_group(
        y_true=np.array([0, 1, 0, 0]),
        y_score=np.array([0.1, 0.9, 0.2, 0.3]),
        sensitive=pd.DataFrame({"g": ["a", "a", "b", "b"]}),
        metric=roc_auc_score,
        name="auc",
    )
    assert one_class["g"]["by_group"]["b"]["auc"] is None
    assert one_class["g"]["by_group"]["a"]["auc"] == 1.0
