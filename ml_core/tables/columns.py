"""Column utilities the checks, the profile and the detectors share: factorising a column
once, its first present values, and measures run once per distinct value."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd


def factorize(values: pd.Series) -> tuple[np.ndarray, object]:
    """``pd.factorize(values)`` (missing values coded -1); a text column is factorised
    as its object array, a third faster than through pandas' string array."""
    if isinstance(values.dtype, pd.StringDtype):
        return pd.factorize(values.to_numpy(dtype=object))
    return pd.factorize(values)


class ColumnCodes:
    """Each column's :func:`factorize`, computed the first time it is asked for, so that the
    checks and the profile of one table hash a text column once between them."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._codes: dict = {}

    def __call__(self, column) -> tuple[np.ndarray, object]:
        if column not in self._codes:
            self._codes[column] = factorize(self._frame[column])
        return self._codes[column]

    def __contains__(self, column) -> bool:
        """Whether ``column`` was factorised already."""
        return column in self._codes

    def of_text(self, column) -> tuple[np.ndarray, object] | None:
        """``self(column)`` for a text column; None for any other."""
        return self(column) if isinstance(self._frame[column].dtype, pd.StringDtype) else None


def first_present(series: pd.Series, n: int) -> pd.Series:
    """The first ``n`` non-missing values of ``series`` (``series.dropna().iloc[:n]``),
    looking at the whole column only when its first rows hold too few."""
    head = series.iloc[:4 * n].dropna()
    if len(head) < n and len(series) > 4 * n:
        head = series.dropna()
    return head.iloc[:n]


def distinct_mean(values: pd.Series, measure) -> float:
    """The mean of ``measure(value)`` over ``values`` (a share, when it answers True or
    False), with ``measure`` run once per distinct value: columns repeat their values."""
    return next(distinct_means(values, (measure,)))


def distinct_means(values: pd.Series, measures) -> Iterator[float]:
    """:func:`distinct_mean` of each of ``measures`` in turn (lazily, so a caller may stop
    at the first that answers), the distinct values counted once for all."""
    counts = values.value_counts(sort=False, dropna=False)
    distinct, weights = counts.index.to_numpy(dtype=object), counts.to_numpy()
    for measure in measures:
        measured = np.fromiter(map(measure, distinct), dtype=float, count=len(distinct))
        yield float((measured * weights).sum() / len(values))
