"""How a text model is judged: its metrics (macro F1 first), and the multi-class fairness
audit (accuracy and macro F1 per group for any number of labels, plus the binary decision
audit for two)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from ml_core import fairness, group_metrics
from ml_core.spec import ProblemSpec


def text_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """macro F1 (every class counts the same), accuracy and support-weighted F1."""
    labels = list(range(n_classes))
    return {
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted",
                                      zero_division=0)),
    }


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(accuracy_score(y_true, y_pred))


def audit_text(
    *, y_true: np.ndarray, y_pred: np.ndarray, groups: pd.DataFrame, classes: list[str],
    positive: int | None, spec: ProblemSpec,
) -> dict:
    """Per-group accuracy and macro F1 for every sensitive attribute (ratio checks at the
    policy's four-fifths level); for two labels also the decision audit of
    :func:`ml_core.fairness.audit` with ``positive`` as the positive label."""
    if groups.shape[1] == 0 or len(y_true) == 0:
        return {}
    policy = spec.fairness
    common = {"sensitive": groups, "kind": "personal", "min_score_ratio":
              policy.min_disparate_impact_ratio, "min_group_size": policy.min_group_size}
    accuracy = group_metrics.score_by_group(y_true=y_true, y_score=y_pred, metric=_accuracy,
                                            name="accuracy", **common)
    macro = group_metrics.score_by_group(y_true=y_true, y_score=y_pred, metric=_macro_f1,
                                         name="macro_f1", **common)
    decisions = None
    if positive is not None:
        decisions = fairness.audit(y_true=(y_true == positive).astype(int),
                                   y_pred=(y_pred == positive).astype(int),
                                   sensitive=groups, policy=policy)
    report = {}
    for attribute, first in accuracy.items():
        second = macro[attribute]
        by_group = {
            group: {**values, "macro_f1": second["by_group"][group]["macro_f1"]}
            for group, values in first["by_group"].items()
        }
        disparities = {**first["disparities"], **second["disparities"]}
        checks = first["checks"] + second["checks"]
        if decisions is not None:
            decided = decisions[attribute]
            for group, values in decided["by_group"].items():
                by_group[group].update({k: values[k] for k in ("selection_rate", "tpr", "fpr")})
            disparities.update(decided["disparities"])
            checks = checks + decided["checks"]
        # The best/worst groups of the two scores can differ: keep each one's name.
        disparities.pop("worst_group", None)
        disparities.pop("best_group", None)
        disparities["worst_group_accuracy"] = first["disparities"]["worst_group"]
        disparities["worst_group_macro_f1"] = second["disparities"]["worst_group"]
        insufficient = first["insufficient_groups"]
        report[attribute] = {
            "by_group": by_group,
            "disparities": disparities,
            "checks": checks,
            "judged_groups": first["judged_groups"],
            "insufficient_groups": insufficient,
            "passed": bool(insufficient or all(check["passed"] for check in checks)),
            "kind": "personal",
            "positive_label": classes[positive] if positive is not None else None,
            "note": first["note"],
        }
    return report
