"""Binary classification metrics (scikit-learn where it has them) and the baseline.

A problem names the metrics it is judged by in ``ProblemSpec.metrics``; :func:`binary_metrics`
computes exactly those (by default the foundation's six), so an imbalanced problem can be
reported by PR AUC and recall at 90 % precision rather than by accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from threadpoolctl import threadpool_limits

from ml_core import cancellation

DEFAULT_THRESHOLD = 0.5
BINARY_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "brier", "ks")
# Metrics where a smaller value is better; everything else is maximised.
LOWER_IS_BETTER = frozenset({
    "brier", "log_loss", "mae", "rmse", "mse", "wape", "mase", "nasa_score",
    "mean_distance_to_target",
})


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


def recall_at_precision(
    y_true: np.ndarray, y_score: np.ndarray, precision: float = 0.9
) -> float:
    """The highest recall over all thresholds whose precision is at least ``precision``.

    What a maintenance planner asks of a failure alarm: "if at most one alarm in ten may be
    false, what share of failures do we catch?". 0.0 when no threshold reaches that
    precision; NaN when ``y_true`` has a single class.
    """
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return math.nan
    precisions, recalls, _ = precision_recall_curve(y_true, np.asarray(y_score, float))
    # The curve's last point (recall 0, precision 1) belongs to no threshold: leave it out.
    reached = precisions[:-1] >= precision
    return float(recalls[:-1][reached].max()) if reached.any() else 0.0


def _ranking(function: Callable) -> Callable:
    """A threshold-free metric, NaN when only one class is present."""

    def metric(y_true: np.ndarray, y_score: np.ndarray, y_pred: np.ndarray) -> float:
        if len(np.unique(y_true)) < 2:
            return math.nan
        return float(function(y_true, y_score))

    return metric


# name -> f(y_true, y_score, y_pred); y_pred is y_score thresholded at the chosen threshold.
METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "roc_auc": _ranking(roc_auc_score),
    "pr_auc": _ranking(average_precision_score),
    "accuracy": lambda y, score, pred: float(accuracy_score(y, pred)),
    "f1": lambda y, score, pred: float(f1_score(y, pred, zero_division=0)),
    "brier": lambda y, score, pred: float(brier_score_loss(y, score, pos_label=1)),
    "ks": lambda y, score, pred: ks_statistic(y, score),
    "recall_at_90_precision": lambda y, score, pred: recall_at_precision(y, score, 0.9),
}


def binary_metrics(
    y_true: np.ndarray, y_score: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """The named ``metrics`` (default: roc_auc, pr_auc, accuracy, f1, brier and ks) as
    plain floats, in the order given. Known names: the keys of :data:`METRIC_FUNCTIONS`.

    Ranking metrics are NaN when ``y_true`` has a single class; thresholded ones (accuracy,
    f1) decide positive where ``y_score >= threshold``.
    """
    names = tuple(metrics) if metrics is not None else BINARY_METRICS
    unknown = [name for name in names if name not in METRIC_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown binary metrics {unknown}; known: {sorted(METRIC_FUNCTIONS)}")
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64)
    y_pred = (y_score >= threshold).astype(int)
    return {name: METRIC_FUNCTIONS[name](y_true, y_score, y_pred) for name in names}


# Points kept on the charted precision-recall curve: enough for a smooth line, small JSON.
MAX_CURVE_POINTS = 200


def classification_charts(
    y_true: np.ndarray, y_score: np.ndarray, *, threshold: float
) -> dict:
    """JSON data for the results page: the precision-recall curve of the test scores
    (at most 200 points, recall ascending) with the chance level (the positive rate), and
    the confusion matrix at ``threshold``.

    ``{"pr_curve": {"precision": [...], "recall": [...], "chance": p},
    "confusion_matrix": {"labels": [0, 1], "matrix": [[tn, fp], [fn, tp]],
    "threshold": t}}``; ``pr_curve`` is None when the test rows hold a single class.
    """
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=np.float64)
    matrix = confusion_matrix(y_true, (y_score >= threshold).astype(int), labels=[0, 1])
    charts: dict = {
        "pr_curve": None,
        "confusion_matrix": {"labels": [0, 1], "matrix": matrix.tolist(),
                             "threshold": float(threshold)},
    }
    if len(np.unique(y_true)) == 2:
        precision, recall, _ = precision_recall_curve(y_true, y_score)
        order = np.argsort(recall, kind="stable")
        keep = np.unique(np.linspace(0, len(order) - 1, min(len(order), MAX_CURVE_POINTS))
                         .round().astype(int))
        charts["pr_curve"] = {
            "precision": [float(v) for v in precision[order][keep]],
            "recall": [float(v) for v in recall[order][keep]],
            "chance": float(y_true.mean()),
        }
    return charts


def positive_class_weight(y_train: np.ndarray) -> float:
    """``n_negative / n_positive`` of the training labels: the BCE ``pos_weight`` that makes
    the rare positives weigh as much, in total, as the negatives. 1.0 without positives."""
    y_train = np.asarray(y_train).astype(int)
    positives = int(y_train.sum())
    if positives == 0:
        return 1.0
    return float((len(y_train) - positives) / positives)


def logistic_regression_baseline(
    *, x_train: np.ndarray, y_train: np.ndarray, x_eval: tuple[np.ndarray, ...], seed: int
) -> tuple[np.ndarray, ...]:
    """Fit scikit-learn's logistic regression on the encoded training rows; the
    positive-class scores of each array in ``x_eval`` (e.g. validation and test)."""
    model = LogisticRegression(max_iter=1000, random_state=seed)
    cancellation.call(lambda: model.fit(x_train, y_train))
    return tuple(model.predict_proba(x)[:, 1] for x in x_eval)


# What the report says of every reference: the analyst's yardstick, never released.
REFERENCE_NOTE = ("Non-private reference, trained on the same split for the curator's eyes "
                  "only; it is not part of any released model.")


def reference_models(
    *, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    x_test: np.ndarray, y_test: np.ndarray, metrics: Sequence[str] | None, seed: int,
) -> dict[str, dict]:
    """Stronger non-private references beside the logistic baseline, on the same encoded
    split: scikit-learn's ``HistGradientBoostingClassifier`` (gradient-boosted trees, the
    usual ceiling on tabular data), judged like the model, at its best-F1 validation
    threshold. ``{"gradient_boosting": {"name", "threshold", "metrics", "note"}}``."""
    model = HistGradientBoostingClassifier(random_state=seed)

    def fit() -> None:
        # One OpenMP thread: on a shared or busy machine its default thread pool spun 20
        # times slower (105 s against 5 s for 2,000 rows x 253 features here). Set in the
        # thread that fits: OpenMP's thread count belongs to the calling thread.
        with threadpool_limits(limits=1, user_api="openmp"):
            model.fit(x_train, y_train)

    # Cancellable as one call (ml_core.cancellation.call), not in warm-started slices of
    # iterations: every slice bins the data again (0.8 s at 50,000 x 30, 3.4 s at 200,000
    # x 30 here), which made every run's reference 4-78 % slower, cancelled or not.
    cancellation.call(fit)
    val, test = (model.predict_proba(x)[:, 1] for x in (x_val, x_test))
    threshold = choose_threshold(y_val, val)
    return {"gradient_boosting": {
        "name": "gradient_boosting", "threshold": threshold,
        "metrics": binary_metrics(y_test, test, threshold=threshold, metrics=metrics),
        "note": REFERENCE_NOTE,
    }}
