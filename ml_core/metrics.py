"""Binary classification metrics (scikit-learn where it has them) and the baseline."""

from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

DEFAULT_THRESHOLD = 0.5
BINARY_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "brier", "ks")
# Metrics where a smaller value is better; everything else is maximised.
LOWER_IS_BETTER = frozenset({"brier", "log_loss"})


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` means a better model."""
    return metric not in LOWER_IS_BETTER


def ks_statistic(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Kolmogorov-Smirnov separation: max |TPR - FPR| over all thresholds.

    Equal to the two-sample KS statistic between the positives' and negatives' scores.
    NaN when only one class is present.
    """
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return math.nan
    fpr, tpr, _ = roc_curve(y_true, y_score, drop_intermediate=False)
    return float(np.max(np.abs(tpr - fpr)))


def choose_threshold(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """The decision threshold that maximises F1 on ``y_true`` (the validation split).

    A fixed 0.5 is wrong for rare positives and for DP-trained models, whose scores are
    often shrunk towards the base rate: every decision would be negative and the fairness
    audit would compare groups on nothing. Falls back to 0.5 with a single class.
    """
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return DEFAULT_THRESHOLD
    precision, recall, thresholds = precision_recall_curve(y_true, np.asarray(y_score, float))
    # precision/recall have one more entry than thresholds (the recall-0 end point).
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def binary_metrics(
    y_true: np.ndarray, y_score: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, float]:
    """roc_auc, pr_auc (average precision), accuracy, f1, brier and ks as plain floats.

    Ranking metrics are NaN when ``y_true`` has a single class.
    """
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64)
    y_pred = (y_score >= threshold).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, y_score)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(y_true, y_score)) if both_classes else math.nan,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "brier": float(brier_score_loss(y_true, y_score, pos_label=1)),
        "ks": ks_statistic(y_true, y_score),
    }


def logistic_regression_baseline(
    *, x_train: np.ndarray, y_train: np.ndarray, x_eval: tuple[np.ndarray, ...], seed: int
) -> tuple[np.ndarray, ...]:
    """Fit scikit-learn's logistic regression on the encoded training rows; the
    positive-class scores of each array in ``x_eval`` (e.g. validation and test)."""
    model = LogisticRegression(max_iter=1000, random_state=seed)
    model.fit(x_train, y_train)
    return tuple(model.predict_proba(x)[:, 1] for x in x_eval)
