"""Group metrics for regression-like and score-like tasks (forecast error, RUL error,
AUC or NDCG per group).

``ml_core.fairness.audit`` covers binary decisions; the families that predict numbers
or rank items report error (or a score) per group of each sensitive attribute here, in
the same outer shape: ``{attr: {"by_group", "disparities", "checks", "passed", "kind"}}``.
``kind`` is ``"personal"`` when the groups are people (sex, age band) and
``"operational"`` when they are units of a business (store, machine type), so the
results page can say which disparities are about people.

Computed with grouped numpy (``np.unique`` + ``np.bincount``); the tests cross-check
with pandas ``groupby`` and sklearn per group.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from ml_core import cancellation

KINDS = ("personal", "operational")


def _check(name: str, value: float | None, threshold: float, *, at_least: bool) -> dict:
    if value is None or math.isnan(value):
        ok = False
    else:
        ok = value >= threshold if at_least else value <= threshold
    return {
        "name": name,
        "value": None if value is None else float(value),
        "threshold": float(threshold),
        "passed": bool(ok),
    }


def _validate_inputs(
    y_true: np.ndarray, y_other: np.ndarray, sensitive: pd.DataFrame, kind: str
) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if y_true.ndim != 1 or y_other.ndim != 1:
        raise ValueError("y_true and predictions must be one-dimensional")
    if len(y_true) != len(y_other) or len(y_true) != len(sensitive):
        raise ValueError(
            f"length mismatch: y_true {len(y_true)}, predictions {len(y_other)}, "
            f"sensitive {len(sensitive)}"
        )


def _group_labels(column: pd.Series) -> np.ndarray:
    return column.astype(object).where(column.notna(), "missing").astype(str).to_numpy()


def _judged(counts: np.ndarray, min_group_size: int) -> tuple[list[int], bool]:
    judged = [i for i, c in enumerate(counts) if c >= min_group_size]
    insufficient = len(judged) < 2
    return judged, insufficient


def _regression_attribute(
    *,
    groups: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    kind: str,
    max_mae_ratio: float,
    min_group_size: int,
) -> dict:
    names, inverse = np.unique(groups, return_inverse=True)
    k = len(names)
    error = y_pred - y_true
    count = np.bincount(inverse, minlength=k).astype(float)
    abs_sum = np.bincount(inverse, weights=np.abs(error), minlength=k)
    sq_sum = np.bincount(inverse, weights=error**2, minlength=k)
    err_sum = np.bincount(inverse, weights=error, minlength=k)
    mae = abs_sum / count
    rmse = np.sqrt(sq_sum / count)
    bias = err_sum / count
    by_group = {
        str(name): {
            "count": int(count[i]),
            "mae": float(mae[i]),
            "rmse": float(rmse[i]),
            "bias": float(bias[i]),
        }
        for i, name in enumerate(names)
    }
    judged, insufficient = _judged(count, min_group_size)
    chosen = list(range(k)) if insufficient else judged
    chosen_mae = mae[chosen]
    highest, lowest = float(chosen_mae.max()), float(chosen_mae.min())
    if lowest > 0:
        mae_ratio = highest / lowest
    else:
        # Zero error in the best group: equal (1.0) when every group is perfect, else unbounded.
        mae_ratio = 1.0 if highest == 0 else float("inf")
    disparities = {
        "mae_ratio": float(mae_ratio),
        "mae_difference": float(highest - lowest),
        "max_abs_bias": float(np.abs(bias[chosen]).max()),
        "worst_group": str(names[chosen[int(np.argmax(chosen_mae))]]),
        "best_group": str(names[chosen[int(np.argmin(chosen_mae))]]),
    }
    checks = [_check("mae_ratio", disparities["mae_ratio"], max_mae_ratio, at_least=False)]
    return _attribute_result(
        by_group=by_group,
        disparities=disparities,
        checks=checks,
        names=names,
        judged=judged,
        insufficient=insufficient,
        kind=kind,
        min_group_size=min_group_size,
    )


def _attribute_result(
    *,
    by_group: dict,
    disparities: dict,
    checks: list[dict],
    names: np.ndarray,
    judged: list[int],
    insufficient: bool,
    kind: str,
    min_group_size: int,
) -> dict:
    result = {
        "by_group": by_group,
        "disparities": disparities,
        "checks": checks,
        "judged_groups": [str(names[i]) for i in judged],
        "insufficient_groups": insufficient,
        # With fewer than two judged groups nothing can be compared fairly: shown, not failed.
        "passed": bool(insufficient or all(check["passed"] for check in checks)),
        "kind": kind,
        "note": None,
    }
    if insufficient:
        result["note"] = (
            f"Fewer than two groups have at least {min_group_size} rows; "
            "disparities are shown over all groups but not judged."
        )
    return result


def regression_by_group(
    *,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sensitive: pd.DataFrame,
    kind: str = "personal",
    max_mae_ratio: float = 1.25,
    min_group_size: int = 1,
) -> dict:
    """Error per group (count, MAE, RMSE, bias = mean(pred - true)) per ``sensitive`` column.

    ``y_true``/``y_pred`` are numeric and aligned by position with the rows of
    ``sensitive`` (string group labels; missing values become ``"missing"``).
    Disparities over the groups with at least ``min_group_size`` rows: ``mae_ratio``
    (largest group MAE / smallest), ``mae_difference`` and ``max_abs_bias``. One check:
    ``mae_ratio <= max_mae_ratio``. Returns ``{attr: {"by_group", "disparities",
    "checks", "judged_groups", "insufficient_groups", "passed", "kind", "note"}}``;
    an empty dict when ``sensitive`` has no columns.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    _validate_inputs(y_true, y_pred, sensitive, kind)
    if len(y_true) == 0:
        return {}
    return {
        str(column): _regression_attribute(
            groups=_group_labels(sensitive[column]),
            y_true=y_true,
            y_pred=y_pred,
            kind=kind,
            max_mae_ratio=max_mae_ratio,
            min_group_size=min_group_size,
        )
        for column in sensitive.columns
    }


def _safe_metric(metric: Callable, y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    try:
        value = float(metric(y_true, y_score))
    except ValueError:
        # e.g. sklearn's AUC on a group holding one class only: undefined for that group.
        return None
    return None if math.isnan(value) else value


def score_by_group(
    *,
    y_true: np.ndarray,
    y_score: np.ndarray,
    sensitive: pd.DataFrame,
    metric: Callable[[np.ndarray, np.ndarray], float],
    name: str,
    kind: str = "personal",
    min_score_ratio: float = 0.8,
    min_group_size: int = 1,
    higher_is_better: bool = True,
) -> dict:
    """One score per group, ``metric(y_true[group], y_score[group])``, per ``sensitive`` column.

    For AUC by student group pass ``metric=sklearn.metrics.roc_auc_score``; for a mean of
    per-user values (NDCG@10 by user group) pass the per-user values as ``y_score`` and
    ``metric=lambda _, s: float(np.mean(s))``. A metric raising ``ValueError`` (one class
    in a group) gives ``None`` for that group. Disparities over judged groups with a
    defined score: ``<name>_ratio`` (worst / best, 1.0 = equal) and ``<name>_difference``
    (best - worst); one check ``<name>_ratio >= min_score_ratio``. Same outer shape as
    :func:`regression_by_group`, each group holding ``{"count", name}``.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    _validate_inputs(y_true, y_score, sensitive, kind)
    if len(y_true) == 0:
        return {}
    report = {}
    for column in sensitive.columns:
        groups = _group_labels(sensitive[column])
        names, inverse = np.unique(groups, return_inverse=True)
        count = np.bincount(inverse, minlength=len(names))
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(count)])
        scores: list[float | None] = []
        for i in cancellation.checked(range(len(names))):  # a metric per group: cancellable
            rows = order[bounds[i] : bounds[i + 1]]
            scores.append(_safe_metric(metric, y_true[rows], y_score[rows]))
        by_group = {str(g): {"count": int(count[i]), name: scores[i]} for i, g in enumerate(names)}
        judged, insufficient = _judged(count, min_group_size)
        chosen = [
            i for i in (range(len(names)) if insufficient else judged) if scores[i] is not None
        ]
        disparities: dict = {
            f"{name}_ratio": None,
            f"{name}_difference": None,
            "worst_group": None,
            "best_group": None,
        }
        if chosen:
            values = np.array([scores[i] for i in chosen], dtype=float)
            best_pos = int(np.argmax(values) if higher_is_better else np.argmin(values))
            worst_pos = int(np.argmin(values) if higher_is_better else np.argmax(values))
            best, worst = float(values[best_pos]), float(values[worst_pos])
            if higher_is_better:
                ratio = worst / best if best > 0 else 1.0
            else:
                ratio = best / worst if worst > 0 else 1.0
            disparities = {
                f"{name}_ratio": float(ratio),
                f"{name}_difference": float(abs(best - worst)),
                "worst_group": str(names[chosen[worst_pos]]),
                "best_group": str(names[chosen[best_pos]]),
            }
        checks = [
            _check(f"{name}_ratio", disparities[f"{name}_ratio"], min_score_ratio, at_least=True)
        ]
        if not chosen:
            # No group has a defined score: nothing to judge.
            insufficient = True
        report[str(column)] = _attribute_result(
            by_group=by_group,
            disparities=disparities,
            checks=checks,
            names=names,
            judged=judged,
            insufficient=insufficient,
            kind=kind,
            min_group_size=min_group_size,
        )
    return report


def passed(report: dict) -> bool:
    """True when every attribute of a group report (either function above) passed."""
    return all(attribute["passed"] for attribute in report.values())
