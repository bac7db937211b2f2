"""The fairness audit (:func:`ml_core.fairness.audit`) against fairlearn's ``MetricFrame``.

Same predictions, two sensitive attributes, every number of the report: per-group count,
selection rate, TPR, FPR, accuracy; demographic-parity difference and ratio; equalized-odds
difference. fairlearn is used the way its documentation shows (one ``MetricFrame`` per
attribute with all metrics, disparities from ``difference()`` / ``ratio()``), which is
already cheaper than calling its three disparity functions separately.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from bench.registry import Result, Settings, Target
from bench.timing import loglog_slope, median, repeated
from ml_core.fairness import audit
from ml_core.spec import FairnessPolicy

NAMES = ("audit_speedup_vs_fairlearn", "audit_max_abs_diff", "scaling_slope_audit")
DEVICES = ("cpu",)
METRICS = ("selection_rate", "tpr", "fpr", "accuracy")


def sizes(settings: Settings) -> dict:
    if settings.tiny:
        return {"rows": 4_000, "repeats": 1, "scaling": (1_000, 4_000, 16_000)}
    if settings.quick:
        return {"rows": 100_000, "repeats": 3, "scaling": (50_000, 200_000, 800_000)}
    return {"rows": 1_000_000, "repeats": 5, "scaling": (250_000, 1_000_000, 4_000_000)}


def predictions(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Binary labels and predictions with a planted disparity, and two banded attributes."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["female", "male"], dtype=object), rows, p=[0.4, 0.6])
    age = rng.choice(np.array(["<25", "25-34", "35-49", "50+", "missing"], dtype=object), rows,
                     p=[0.2, 0.3, 0.3, 0.19, 0.01])
    y_true = (rng.random(rows) < 0.3).astype(np.int64)
    rate = np.where(sex == "male", 0.45, 0.3) + 0.3 * y_true
    y_pred = (rng.random(rows) < rate).astype(np.int64)
    return y_true, y_pred, pd.DataFrame({"sex": sex, "age": age})


def fairlearn_report(y_true: np.ndarray, y_pred: np.ndarray, sensitive: pd.DataFrame) -> dict:
    """The same numbers as the audit report, computed by fairlearn."""
    report = {}
    for column in sensitive.columns:
        frame = MetricFrame(
            metrics={"count": count, "selection_rate": selection_rate,
                     "tpr": true_positive_rate, "fpr": false_positive_rate,
                     "accuracy": accuracy_score},
            y_true=y_true, y_pred=y_pred, sensitive_features=sensitive[column].to_numpy(),
        )
        difference = frame.difference(method="between_groups")
        ratio = frame.ratio(method="between_groups")
        report[column] = {
            "by_group": {str(group): row.to_dict() for group, row in frame.by_group.iterrows()},
            "disparities": {
                "demographic_parity_difference": float(difference["selection_rate"]),
                "demographic_parity_ratio": float(ratio["selection_rate"]),
                "equalized_odds_difference": float(max(difference["tpr"], difference["fpr"])),
            },
        }
    return report


def max_abs_diff(ours: dict, reference: dict) -> float:
    """Largest absolute difference over every number both reports carry (inf if a group or
    a number is missing from ours)."""
    worst = 0.0
    for attribute, expected in reference.items():
        got = ours[attribute]
        if set(got["by_group"]) != set(expected["by_group"]):
            return math.inf
        for group, numbers in expected["by_group"].items():
            for metric in ("count", *METRICS):
                worst = max(worst, _diff(got["by_group"][group][metric], numbers[metric]))
        for name, value in expected["disparities"].items():
            worst = max(worst, _diff(got["disparities"][name], value))
    return worst


def _diff(got: float | None, expected: float) -> float:
    if got is None:
        return 0.0 if math.isnan(expected) else math.inf
    return abs(float(got) - float(expected))


def _audit(y_true, y_pred, sensitive, policy) -> dict:  # noqa: ANN001
    return audit(y_true=y_true, y_pred=y_pred, sensitive=sensitive, policy=policy)


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    policy = FairnessPolicy()
    y_true, y_pred, sensitive = predictions(s["rows"], settings.seed)
    ours_times, ours = repeated(lambda: _audit(y_true, y_pred, sensitive, policy),
                                repeats=s["repeats"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # One call: fairlearn takes seconds, so warm-up effects are negligible next to it.
        reference_times, reference = repeated(
            lambda: fairlearn_report(y_true, y_pred, sensitive), repeats=1, warmup=False
        )
    ours_s, reference_s = median(ours_times), median(reference_times)

    scaling = []
    for rows in s["scaling"]:
        yt, yp, sens = predictions(rows, settings.seed + rows)
        seconds, _ = repeated(lambda yt=yt, yp=yp, sens=sens: _audit(yt, yp, sens, policy),
                              repeats=s["repeats"])
        scaling.append(median(seconds))
    slope = loglog_slope(list(s["scaling"]), scaling)
    rows = s["rows"]
    return [
        Result("audit_speedup_vs_fairlearn", reference_s / ours_s, "x",
               f"fairlearn MetricFrame, {rows:,} rows, 2 attributes ({reference_s:.3g} s; "
               f"ours {ours_s:.3g} s)", Target(low=20),
               details={"rows": rows, "ours_s": ours_s, "fairlearn_s": reference_s}),
        Result("audit_max_abs_diff", max_abs_diff(ours, reference), "abs",
               "fairlearn MetricFrame numbers on the same predictions", Target(high=1e-9),
               details={"rows": rows}),
        Result("scaling_slope_audit", slope, "log-log slope",
               f"audit time at {', '.join(f'{n:,}' for n in s['scaling'])} rows: "
               + ", ".join(f"{t:.3g} s" for t in scaling),
               Target(low=0.9, high=1.1),
               details={"rows": list(s["scaling"]), "seconds": scaling}),
    ]
