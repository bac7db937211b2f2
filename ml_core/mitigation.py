"""Bias mitigation after training: fairlearn's ThresholdOptimizer on a model's scores.

Group-specific (possibly randomised) thresholds are fitted on rows the model was not judged
on, then applied to the held-out test rows, where the original decisions and the mitigated
ones are audited side by side with the utility cost. The thresholds use the sensitive
attribute at decision time and are computed without differential privacy: the report says
so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ml_core import fairness
from ml_core.spec import FairnessPolicy

CONSTRAINTS = ("demographic_parity", "equalized_odds")


class _ScoresAsModel(ClassifierMixin, BaseEstimator):
    """A 'model' whose single input column already is its positive-class probability, so
    ThresholdOptimizer can post-process scores from any source (prefit)."""

    def fit(self, x, y):  # noqa: ARG002
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, x):
        score = np.asarray(x, dtype=float).reshape(-1)
        return np.column_stack([1 - score, score])

    def predict(self, x):
        return (self.predict_proba(x)[:, 1] >= 0.5).astype(int)


def decision_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Utility of 0/1 decisions: accuracy, balanced accuracy, F1 and the selection rate."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "selection_rate": float(np.mean(y_pred)),
    }


@dataclass(frozen=True)
class MitigationResult:
    method: str
    constraint: str
    attribute: str
    fit_rows: int
    eval_rows: int
    original: dict  # {"metrics": {...}, "fairness": audit report, "passed": bool}
    mitigated: dict
    utility_cost: dict  # metric -> original - mitigated (positive: utility lost)
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


def threshold_optimizer(
    *, scores_fit: np.ndarray, y_fit: np.ndarray, groups_fit: pd.Series,
    scores_eval: np.ndarray, y_eval: np.ndarray, groups_eval: pd.DataFrame, attribute: str,
    original_pred_eval: np.ndarray, constraint: str, policy: FairnessPolicy, seed: int = 0,
) -> MitigationResult:
    """Fit group thresholds for ``attribute`` on the fit rows under ``constraint``
    ("demographic_parity" or "equalized_odds"), apply them to the evaluation rows, and audit
    both the original decisions and the mitigated ones on every attribute of
    ``groups_eval``."""
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {CONSTRAINTS}")
    optimizer = ThresholdOptimizer(
        estimator=_ScoresAsModel().fit(None, None), constraints=constraint, prefit=True,
        predict_method="predict_proba", objective="accuracy_score",
    )
    optimizer.fit(np.asarray(scores_fit, dtype=float).reshape(-1, 1), np.asarray(y_fit),
                  sensitive_features=np.asarray(groups_fit.astype(str)))
    mitigated_pred = optimizer.predict(
        np.asarray(scores_eval, dtype=float).reshape(-1, 1),
        sensitive_features=np.asarray(groups_eval[attribute].astype(str)), random_state=seed,
    ).astype(int)
    y_eval = np.asarray(y_eval).astype(int)
    sides = {}
    for name, pred in (("original", np.asarray(original_pred_eval).astype(int)),
                       ("mitigated", mitigated_pred)):
        report = fairness.audit(y_true=y_eval, y_pred=pred, sensitive=groups_eval,
                                policy=policy)
        sides[name] = {"metrics": decision_metrics(y_eval, pred), "fairness": report,
                       "passed": fairness.passed(report)}
    cost = {metric: sides["original"]["metrics"][metric] - sides["mitigated"]["metrics"][metric]
            for metric in ("accuracy", "balanced_accuracy", "f1")}
    return MitigationResult(
        method="threshold_optimizer", constraint=constraint, attribute=attribute,
        fit_rows=int(len(y_fit)), eval_rows=int(len(y_eval)),
        original=sides["original"], mitigated=sides["mitigated"], utility_cost=cost,
        notes=(
            f"Thresholds per {attribute} group were fitted on {len(y_fit)} rows outside the "
            f"test split and judged on the {len(y_eval)} test rows.",
            "The decision uses the sensitive attribute and may be randomised between two "
            "thresholds for some groups (fairlearn's ThresholdOptimizer).",
            "The thresholds are computed from the data without differential privacy: the "
            "model's privacy guarantee does not extend to them.",
        ),
    )


def reweighing_weights(groups: pd.Series, y: np.ndarray) -> np.ndarray:
    """Kamiran & Calders reweighing: each row weighs ``P(g) P(y) / P(g, y)`` for its group
    ``g`` and label ``y``, so that group and label are independent in the weighted data.

    Call it on the *training* rows only (the probabilities are the training rows' shares);
    validation and test rows are never weighted. Returns float32 weights aligned with ``y``.
    """
    groups = pd.Series(np.asarray(groups.astype(str)), name="g")
    labels = pd.Series(np.asarray(y).astype(int), name="y")
    if len(groups) != len(labels):
        raise ValueError("groups and labels must have the same length")
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    p_group = groups.map(groups.value_counts() / n).to_numpy(dtype=float)
    p_label = labels.map(labels.value_counts() / n).to_numpy(dtype=float)
    cell = pd.DataFrame({"g": groups, "y": labels})
    p_cell = cell.groupby(["g", "y"])["g"].transform("size").to_numpy(dtype=float) / n
    return (p_group * p_label / p_cell).astype(np.float32)
