"""Metrics agree with scikit-learn and scipy on the same arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp
from sklearn import metrics as skm

from ml_core.metrics import (
    binary_metrics,
    choose_threshold,
    ks_statistic,
    logistic_regression_baseline,
)


@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    # Rounded scores make ties, the case where definitions usually drift apart.
    score = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.2, 500), 0, 1), 2)
    return y, score


def test_metrics_equal_sklearn(arrays):
    y, score = arrays
    got = binary_metrics(y, score)
    pred = (score >= 0.5).astype(int)
    assert got["roc_auc"] == skm.roc_auc_score(y, score)
    assert got["pr_auc"] == skm.average_precision_score(y, score)
    assert got["accuracy"] == skm.accuracy_score(y, pred)
    assert got["f1"] == skm.f1_score(y, pred)
    assert got["brier"] == skm.brier_score_loss(y, score)
    assert all(type(value) is float for value in got.values())


def test_ks_equals_scipy_two_sample_statistic(arrays):
    y, score = arrays
    reference = ks_2samp(score[y == 1], score[y == 0]).statistic
    assert abs(ks_statistic(y, score) - reference) < 1e-9
    continuous = np.clip(score + np.random.default_rng(4).normal(0, 1e-3, len(score)), 0, 1)
    reference = ks_2samp(continuous[y == 1], continuous[y == 0]).statistic
    assert abs(binary_metrics(y, continuous)["ks"] - reference) < 1e-9


def test_single_class_gives_nan_ranking_metrics():
    got = binary_metrics(np.zeros(5, dtype=int), np.linspace(0, 1, 5))
    assert math.isnan(got["roc_auc"]) and math.isnan(got["ks"])
    assert got["accuracy"] == pytest.approx(0.4)  # scores 0.5, 0.75, 1 predict positive


def test_logistic_baseline_learns_the_planted_signal(frame, split):
    (scores,) = logistic_regression_baseline(
        x_train=split.x_train, y_train=split.y_train, x_eval=(split.x_test,), seed=0
    )
    assert binary_metrics(split.y_test, scores)["roc_auc"] > 0.8


def test_threshold_maximises_f1_on_the_given_rows():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.1).astype(int)
    # Shrunk scores, as a DP model gives: all below 0.5, still ranking positives higher.
    scores = 0.05 + 0.2 * y * rng.random(500) + 0.1 * rng.random(500)
    chosen = choose_threshold(y, scores)
    best = max(f1_score(y, (scores >= t).astype(int)) for t in np.unique(scores))
    assert chosen < 0.5
    assert f1_score(y, (scores >= chosen).astype(int)) == pytest.approx(best, abs=1e-12)
    assert choose_threshold(np.zeros(10, int), np.linspace(0, 1, 10)) == 0.5
