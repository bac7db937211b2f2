"""Group metrics and disparities for sensitive attributes.

Computed with grouped numpy counts (``np.unique`` + ``np.bincount``): fairlearn's
``MetricFrame`` gives the same numbers but is two orders of magnitude slower on large
inputs, so fairlearn is the reference in the tests, not the implementation here.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from ml_core import cancellation
from ml_core.spec import Banding, ColumnMapping, FairnessPolicy, ProblemSpec
from ml_core.tables import factorize

MISSING_GROUP = "missing"
# Numeric attributes with more distinct values than this and no declared banding are
# cut into quartiles: one group per distinct value would make every group tiny.
MAX_DISTINCT_UNBANDED = 10


def _fmt(value: float) -> str:
    """Print integral numbers without a trailing '.0'."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def _band_labels(edges: list[float], integer_style: bool) -> list[str]:
    """Labels for right-open intervals: ``<e0``, ``e0-..``, ..., ``eN+``."""
    labels = [f"<{_fmt(edges[0])}"]
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        if integer_style:
            labels.append(f"{_fmt(low)}-{_fmt(high - 1)}")
        else:
            labels.append(f"{_fmt(low)}-<{_fmt(high)}")
    labels.append(f"{_fmt(edges[-1])}+")
    return labels


def _cut(edges: list[float], integer_style: bool, values: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """(the interval of each value, the intervals' labels)."""
    labels = np.asarray(_band_labels(edges, integer_style), dtype=object)
    # side="right": a value equal to an edge belongs to the interval starting there.
    return np.searchsorted(np.asarray(edges, dtype=float), values, side="right"), labels


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _banded(series: pd.Series, banding: Banding | None,
            factorized: tuple[np.ndarray, object] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(codes, labels): the group of row ``i`` is ``labels[codes[i]]`` (see :func:`band`).
    Labels may repeat (values that only differ by spaces) and some may be unused.
    ``factorized`` is ``factorize(series)`` when the caller has it."""
    present = series.notna().to_numpy()
    codes = np.zeros(len(series), dtype=np.intp)
    if not present.any():
        return codes, np.array([MISSING_GROUP], dtype=object)
    everywhere = bool(present.all())
    if _is_numeric(series):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        values = values if everywhere else values[present]
        if banding is not None and banding.edges:
            edges = sorted(float(e) for e in banding.edges)
            found, labels = _cut(edges, all(e.is_integer() for e in edges), values)
        else:
            found = labels = None
            if len(np.unique(values)) > MAX_DISTINCT_UNBANDED:
                integral = bool(np.all(np.mod(values, 1) == 0))
                quartiles = np.quantile(values, [0.25, 0.5, 0.75])
                if integral:
                    # For whole numbers, "< 27.5" and "< 28" select the same rows.
                    quartiles = np.ceil(quartiles)
                edges = sorted({float(q) for q in quartiles if q > values.min()})
                if edges:
                    found, labels = _cut(edges, integral, values)
            if labels is None:
                distinct, found = np.unique(values, return_inverse=True)
                labels = np.asarray([_fmt(v) for v in distinct], dtype=object)
    else:
        values = series if everywhere else series[present]
        if pd.api.types.infer_dtype(values, skipna=True) == "string":
            # Text only: equal strings give equal labels, so each distinct one is cut once.
            if factorized is None:
                found, distinct = factorize(values)
            else:
                found, distinct = factorized
                found = found if everywhere else found[present]
            labels = np.asarray([str(v).strip() for v in distinct], dtype=object)
        else:
            found, labels = pd.factorize(np.asarray([str(v).strip() for v in values],
                                                    dtype=object))
            labels = np.asarray(labels, dtype=object)
    if everywhere:
        codes = np.asarray(found, dtype=np.intp)
    else:
        codes[:] = len(labels)
        codes[present] = found
    return codes, np.append(labels, MISSING_GROUP)


_BAND = re.compile(r"^(?P<lt><)?(?P<low>-?\d+(?:\.\d+)?)(?P<rest>.*)$")


def group_sort_key(label: object) -> tuple:
    """Orders group labels as a reader expects: bands and numbers numerically (``<26``
    before ``26-31`` before ``50+``), then text alphabetically, ``missing`` last."""
    text = str(label)
    if text == MISSING_GROUP:
        return (2, 0.0, 0, text)
    found = _BAND.match(text.strip())
    if found is None:
        return (1, 0.0, 0, text.lower())
    # "<x" holds values below x, so it sorts before "x-..." and "x+" (same number).
    rank = 0 if found["lt"] else (2 if found["rest"].strip() == "+" else 1)
    return (0, float(found["low"]), rank, text)


def band_labels(banding: Banding) -> list[str]:
    """The group labels a declared banding gives (``<25``, ``25-34``, ..., ``65+``): the one
    source for the profile, the fairness report and the guides' text."""
    edges = sorted(float(e) for e in banding.edges)
    return _band_labels(edges, all(e.is_integer() for e in edges))


def band(series: pd.Series, banding: Banding | None) -> pd.Series:
    """Turn one sensitive attribute into string group labels.

    Numeric with ``banding``: right-open intervals (``edges=(25, 35, 50)`` gives
    ``<25``, ``25-34``, ``35-49``, ``50+``). Numeric without banding but with more than
    10 distinct values: quartile bands. Anything else: ``str(value)`` (integral floats
    without ``.0``). Missing values become ``"missing"``. Index and name are kept.
    """
    codes, labels = _banded(series, banding)
    return pd.Series(labels[codes], index=series.index, name=series.name, dtype=object)


def band_counts(series: pd.Series, banding: Banding | None,
                factorized: tuple[np.ndarray, object] | None = None) -> pd.Series:
    """Rows per group of :func:`band` (``band(series, banding).value_counts()``, in no
    particular order), counted on the groups' codes rather than on their labels.
    ``factorized`` is ``factorize(series)`` when the caller has it."""
    codes, labels = _banded(series, banding, factorized)
    counts = pd.Series(np.bincount(codes, minlength=len(labels)), index=labels)
    counts = counts[counts > 0]
    return counts.groupby(level=0, sort=False).sum() if not counts.index.is_unique else counts


def sensitive_frame(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec) -> pd.DataFrame:
    """One banded string column per ``mapping.sensitive`` column, aligned with ``frame``."""
    return pd.DataFrame(
        {column: band(frame[column], spec.banding_for(column)) for column in mapping.sensitive},
        index=frame.index,
        columns=list(mapping.sensitive),
    )


def _as_positive(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    return values == 1  # bools compare equal to 1 too


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> list[float | None]:
    return [float(n / d) if d > 0 else None for n, d in zip(numerator, denominator, strict=True)]


def _spread(values: list[float | None]) -> float:
    """max - min over the groups where the rate is defined (0.0 when fewer than two)."""
    defined = [v for v in values if v is not None]
    return float(max(defined) - min(defined)) if len(defined) >= 2 else 0.0


def _audit_attribute(
    *, groups: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, policy: FairnessPolicy
) -> dict:
    # factorize hashes where np.unique sorts strings: the same sorted groups, linear time.
    inverse, names = pd.factorize(pd.Series(groups, copy=False), sort=True)
    names = np.asarray(names)
    k = len(names)
    count = np.bincount(inverse, minlength=k).astype(float)
    selected = np.bincount(inverse, weights=y_pred, minlength=k)
    positives = np.bincount(inverse, weights=y_true, minlength=k)
    negatives = count - positives
    true_pos = np.bincount(inverse, weights=y_true & y_pred, minlength=k)
    false_pos = np.bincount(inverse, weights=~y_true & y_pred, minlength=k)
    correct = np.bincount(inverse, weights=y_true == y_pred, minlength=k)

    selection_rate = _ratio(selected, count)
    tpr = _ratio(true_pos, positives)
    fpr = _ratio(false_pos, negatives)
    accuracy = _ratio(correct, count)
    order = sorted(range(k), key=lambda i: group_sort_key(names[i]))
    by_group = {
        str(names[i]): {
            "count": int(count[i]),
            "selection_rate": selection_rate[i],
            "tpr": tpr[i],
            "fpr": fpr[i],
            "accuracy": accuracy[i],
        }
        for i in order
    }

    # The share of each group given the favourable outcome: the selection rate, or its
    # complement where the positive class is a harm (predicted to default).
    favourable = [r if r is None or policy.favourable.positive else 1.0 - r
                  for r in selection_rate]
    for i, name in enumerate(names):
        by_group[str(name)]["favourable_rate"] = favourable[i]

    judged = [i for i in range(k) if count[i] >= policy.min_group_size]
    insufficient = len(judged) < 2
    # With fewer than two judged groups there is nothing to compare fairly; the numbers
    # over all groups are still shown, but the attribute is not failed on them.
    chosen = list(range(k)) if insufficient else judged
    rates = [favourable[i] for i in chosen]
    highest, lowest = max(rates), min(rates)
    dp_difference = float(highest - lowest)
    # The four-fifths rule: the least-favoured group's share over the most-favoured's.
    dp_ratio = float(lowest / highest) if highest > 0 else 1.0
    eo_difference = max(_spread([tpr[i] for i in chosen]), _spread([fpr[i] for i in chosen]))

    checks = [
        _check("four_fifths_rule", dp_ratio, policy.min_disparate_impact_ratio, at_least=True),
        _check(
            "demographic_parity_difference", dp_difference,
            policy.max_demographic_parity_difference, at_least=False,
        ),
        _check(
            "equalized_odds_difference", eo_difference,
            policy.max_equalized_odds_difference, at_least=False,
        ),
    ]
    result = {
        "by_group": by_group,
        "disparities": {
            "demographic_parity_difference": dp_difference,
            "demographic_parity_ratio": dp_ratio,
            "equalized_odds_difference": eo_difference,
        },
        "checks": checks,
        "favourable": {"positive": policy.favourable.positive,
                       "text": policy.favourable.text},
        "judged_groups": [str(names[i]) for i in judged],
        "insufficient_groups": insufficient,
        "passed": insufficient or all(check["passed"] for check in checks),
        "note": None,
        # "personal" (people's attributes) or "operational" (machine type, line): the same
        # numbers, read differently.
        "kind": policy.kind,
    }
    if insufficient:
        result["note"] = (
            f"Fewer than two groups have at least {policy.min_group_size} rows; "
            "disparities are shown over all groups but not judged."
        )
    return result


def _check(name: str, value: float, threshold: float, *, at_least: bool) -> dict:
    ok = value >= threshold if at_least else value <= threshold
    if math.isnan(value):
        ok = False
    return {"name": name, "value": float(value), "threshold": float(threshold), "passed": bool(ok)}


def audit(
    *, y_true: np.ndarray, y_pred: np.ndarray, sensitive: pd.DataFrame, policy: FairnessPolicy
) -> dict:
    """Per-group metrics, disparities and policy checks for every column of ``sensitive``.

    ``y_true`` and ``y_pred`` are binary with 1 (or True) as the positive class, aligned
    by position with the rows of ``sensitive`` (banded strings, see
    :func:`sensitive_frame`). Disparities are taken over the groups with at least
    ``policy.min_group_size`` rows; smaller groups are reported but not judged.
    ``equalized_odds_difference`` is fairlearn's (worst case of the between-group TPR
    and FPR differences); a group without positives (negatives) has ``tpr`` (``fpr``)
    None and is left out of that difference. Everything returned is JSON-ready.
    """
    truth = _as_positive(y_true, "y_true")
    pred = _as_positive(y_pred, "y_pred")
    if len(truth) != len(pred) or len(truth) != len(sensitive):
        raise ValueError(
            f"y_true ({len(truth)}), y_pred ({len(pred)}) and sensitive ({len(sensitive)}) "
            "must have the same length"
        )
    report = {}
    if len(truth) == 0:
        return report
    for column in cancellation.checked(sensitive.columns):
        groups = sensitive[column].astype(object).where(sensitive[column].notna(), MISSING_GROUP)
        report[str(column)] = _audit_attribute(
            groups=groups.astype(str).to_numpy(), y_true=truth, y_pred=pred, policy=policy
        )
    return report


def passed(report: dict) -> bool:
    """True when every audited attribute passed (an empty report passes)."""
    return all(attribute["passed"] for attribute in report.values())


PASSED, FAILED, NOT_JUDGED = "passed", "failed", "not_judged"


def attribute_verdict(part: dict) -> str:
    """``"passed"``, ``"failed"`` or ``"not_judged"`` for one attribute of any report shape
    (this module's or :mod:`ml_core.group_metrics`').

    An attribute with fewer than two groups of the policy's minimum size is *not judged*:
    its ``passed`` is True only so that it blocks nothing, and its checks (computed over
    all groups for information) are not verdicts. Every page, gate and API reads this one
    function so that none of them can call such an attribute "passed".
    """
    if part.get("insufficient_groups"):
        return NOT_JUDGED
    return PASSED if part.get("passed") else FAILED


def report_verdict(report: dict) -> str:
    """The whole report's verdict: failed when any attribute failed, not judged when no
    attribute could be judged (or none was audited), passed otherwise."""
    verdicts = [attribute_verdict(part) for part in report.values() if isinstance(part, dict)]
    if FAILED in verdicts:
        return FAILED
    return PASSED if PASSED in verdicts else NOT_JUDGED
