"""A JSON-ready summary of an uploaded table under its mapping, for the dataset page."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ml_core.column_types import DATE, infer_column_type
from ml_core.data import feature_columns, label_text, level_counts
from ml_core.fairness import band_counts, group_sort_key
from ml_core.spec import ColumnMapping, ProblemSpec
from ml_core.tables import ColumnCodes, factorize

HISTOGRAM_BINS = 10
TOP_VALUES = 10
# A target with at most this many distinct values is counted per class.
MAX_BALANCE_CLASSES = 20


def _kind(series: pd.Series) -> str:
    """The column's inferred kind (:func:`ml_core.column_types.infer_column_type`), with
    dates called ``datetime`` as the profile always has."""
    kind = infer_column_type(series).kind
    return "datetime" if kind == DATE else kind


def _role(column: str, mapping: ColumnMapping, features: set[str]) -> str:
    if column == mapping.target:
        return "target"
    if column == mapping.id:
        return "id"
    if column in mapping.sensitive:
        return "sensitive"
    if column in mapping.exclude:
        return "exclude"
    return "feature" if column in features else "unused"


# A numeric column with at most this many distinct values is charted as categories.
MAX_CATEGORICAL_NUMERIC = 10


def _number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _histogram(values: np.ndarray) -> dict:
    """Ten bins over the finite ``values``."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"bins": [], "counts": []}
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    return {"bins": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _stats(values: np.ndarray) -> dict:
    """Min, max, mean and (population) standard deviation of the non-missing ``values``,
    computed as pandas' ``Series.mean`` and ``Series.std(ddof=0)`` do."""
    if values.size == 0:
        return {"min": None, "max": None, "mean": None, "std": None}
    mean = values.sum(dtype=np.float64) / values.size
    with np.errstate(invalid="ignore", over="ignore"):  # inf gives nan, reported as None
        std = np.sqrt(((mean - values) ** 2).sum(dtype=np.float64) / values.size)
    return {
        "min": _number(values.min()),
        "max": _number(values.max()),
        "mean": _number(mean),
        "std": _number(std),
    }


def _numeric_profile(series: pd.Series) -> dict:
    """Missing share, distinct count, histogram and stats of a numeric column, from one
    float copy of it."""
    if not pd.api.types.is_numeric_dtype(series):
        # Inferred numeric with a minority of other values ('1~~1' among counts): those
        # count as missing here; validation names them.
        series = pd.to_numeric(series, errors="coerce")
    values = series.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(values)
    present = values[~missing] if missing.any() else values
    n_unique = int(series.nunique(dropna=True))
    profile = {
        "missing_share": float(missing.mean()) if len(values) else 0.0,
        "n_unique": n_unique,
        "histogram": _histogram(present),
        "stats": _stats(present),
    }
    if 0 < n_unique <= MAX_CATEGORICAL_NUMERIC:
        # Codes and counts (a grade 0-3, a number of dependants): one bar per value in
        # numeric order reads better than ten bins, most of them empty.
        distinct, counts = np.unique(present[np.isfinite(present)], return_counts=True)
        profile["value_counts"] = [[_value_label(v), int(c)]
                                   for v, c in zip(distinct, counts, strict=True)]
    return profile


def _value_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _label_counts(series: pd.Series, limit: int | None = None, *,
                  factorized: tuple[np.ndarray, object] | None = None) -> dict[str, int]:
    """Rows per label (``label_text``) among the non-missing values, commonest first
    (ties in order of first appearance); the ``limit`` commonest when given.
    ``factorized`` is ``pd.factorize(series)`` when the caller has it."""
    if pd.api.types.infer_dtype(series, skipna=True) in ("mixed", "mixed-integer"):
        # Hashing would merge True with 1, whose labels differ: the per-row path.
        merged = level_counts(series.dropna())
        labels, numbers = list(merged), np.fromiter(merged.values(), dtype=np.int64,
                                                    count=len(merged))
    else:
        # Counted per value (in order of first appearance), then per label: label_text
        # runs once per distinct value (for strings it is the string stripped).
        strings = isinstance(series.dtype, pd.StringDtype)
        codes, uniques = factorized if factorized is not None else factorize(series)
        numbers = np.bincount(codes[codes >= 0], minlength=len(uniques))
        raw = np.asarray(uniques, dtype=object)
        names = np.array([value.strip() if strings else label_text(value) for value in raw],
                         dtype=object)
        # Distinct values stay distinct unless stripping merged some.
        if not ((strings and bool((names == raw).all())) or pd.Index(names).is_unique):
            merged = pd.Series(numbers).groupby(names, sort=False).sum()
            names, numbers = merged.index.to_numpy(dtype=object), merged.to_numpy()
        labels = names
    order = _commonest(np.asarray(numbers), limit)
    return {str(labels[i]): int(numbers[i]) for i in order}


def _commonest(numbers: np.ndarray, limit: int | None) -> np.ndarray:
    """Positions of ``numbers`` from the largest down, ties in order of position (a stable
    sort of ``-numbers``); only the ``limit`` first when given, found without sorting all
    (an id column has as many counts as rows)."""
    if limit is not None and len(numbers) > limit:
        kth = np.partition(numbers, len(numbers) - limit)[len(numbers) - limit]
        above = np.flatnonzero(numbers > kth)
        ties = np.flatnonzero(numbers == kth)[:limit - len(above)]
        chosen = np.concatenate((above, ties))
        return chosen[np.argsort(-numbers[chosen], kind="stable")]
    return np.argsort(-numbers, kind="stable")[:limit]


def _top_values(series: pd.Series, factorized: tuple[np.ndarray, object] | None = None
                ) -> list[list]:
    return [[value, count] for value, count in _label_counts(
        series, TOP_VALUES, factorized=factorized).items()]


def _column_profile(series: pd.Series, *, role: str, known: ColumnCodes) -> dict:
    kind = _kind(series)
    entry = {"name": str(series.name), "dtype": kind, "role": role}
    if kind == "numeric":
        entry.update(_numeric_profile(series))
    else:
        # One factorisation gives the missing share, the distinct count and the counts.
        factorized = known(series.name)
        codes, uniques = factorized
        entry["missing_share"] = float((codes < 0).mean()) if len(series) else 0.0
        entry["n_unique"] = len(uniques)
        entry["top_values"] = _top_values(series, factorized)
    return entry


def profile(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec, *,
            codes: ColumnCodes | None = None) -> dict:
    """Summarise ``frame`` for people: per column its kind, role, missing share, distinct
    values and a 10-bin histogram (numeric) or its 10 commonest values (otherwise); the
    target's class counts; and the size of every (banded) group of each sensitive column.

    ``dtype`` is one of ``numeric``, ``categorical``, ``text``, ``datetime``; ``role`` one
    of ``target``, ``id``, ``sensitive``, ``exclude``, ``feature``, ``unused``. Columns
    named in the mapping but absent from ``frame`` are skipped (validation reports them).
    Everything returned is JSON-ready (no NaN). ``codes`` shares the text columns'
    factorisations with other steps (validation) on the same rows.
    """
    codes = ColumnCodes(frame) if codes is None else codes
    present = {str(column) for column in frame.columns}
    features = set(feature_columns(frame, mapping))
    columns = [
        _column_profile(frame[column], role=_role(str(column), mapping, features), known=codes)
        for column in frame.columns
    ]
    target_balance: dict[str, int] = {}
    if mapping.target in present:
        counts = _label_counts(frame[mapping.target])
        if len(counts) <= MAX_BALANCE_CLASSES:
            target_balance = dict(sorted(counts.items()))
    groups = {}
    for column in mapping.sensitive:
        if column not in present:
            continue
        counts = band_counts(frame[column], spec.banding_for(column), codes.of_text(column))
        groups[column] = {str(group): int(n) for group, n in
                          sorted(counts.items(), key=lambda item: group_sort_key(item[0]))}
    return {
        "rows": int(len(frame)),
        "n_columns": int(frame.shape[1]),
        "columns": columns,
        "target_balance": target_balance,
        "groups": groups,
    }
