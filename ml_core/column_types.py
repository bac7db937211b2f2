"""What kind of values a column holds, as inferred from them or as the analyst says.

Four kinds: ``numeric`` (amounts, counts, measurements), ``categorical`` (labels and
codes), ``date`` and ``text`` (free text, several words a value). Real exports hold codes
that look like numbers: ICD-9 diagnoses (``250.83`` beside ``V57`` and ``E849``),
postcodes (``02139`` beside ``L9G2B``), DRG and branch codes with leading zeros. Those are
categorical, whatever share of them parse as numbers, because their numeric order means
nothing. :func:`infer_column_type` recognises them; a column the inference gets wrong is
set right with an override (``--column-type COL=KIND`` in the command, ``column_types`` in
the mapping), which :func:`typed_column` applies wherever the column is encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_core.tables import distinct_means, first_present, is_number

NUMERIC = "numeric"
CATEGORICAL = "categorical"
DATE = "date"
TEXT = "text"
KINDS = (CATEGORICAL, NUMERIC, DATE, TEXT)

# Values a column's kind is judged on: the first present ones.
KIND_SAMPLE = 1000
# A text column is called numeric-with-typos when at least this share of its values are numbers.
NUMERIC_SHARE = 0.8
# Free text (notes, complaints) as opposed to category labels: several words on average.
TEXT_MIN_MEAN_WORDS = 3.0
# Day-first or ISO dates, optionally with a time: 05/02/10, 2010-02-05, 5.2.2010 12:00.
DATE_PATTERN = re.compile(
    r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
DATE_SHARE = 0.9
# A letter-prefixed code, short and without spaces: V57, E8497, L9G2B, A-113. A value that
# starts with digits ("12k", "78000S") is more often a typo in a number than a code.
_CODE = re.compile(r"[A-Za-z]{1,3}[0-9][0-9A-Za-z.\-]{0,9}")
_LEADING_ZERO = re.compile(r"[+-]?0[0-9]+")


@dataclass(frozen=True)
class ColumnKind:
    """A column's kind and, in plain words, why it was given (shown beside the mapping)."""

    kind: str
    reason: str
    overridden: bool = False

    def to_dict(self) -> dict:
        return {"kind": self.kind, "reason": self.reason, "overridden": self.overridden}


def infer_column_type(values: pd.Series) -> ColumnKind:
    """The kind of ``values`` (one column), judged on its first present values.

    Numbers read as numbers are ``numeric``, booleans ``categorical``. For text: dates
    (at least 90% date-shaped) are ``date``; codes are ``categorical``, namely digit strings
    with leading zeros, and columns of mostly numbers whose other values are letter-prefixed
    or letter-bearing codes (``V57``, ``E849``, ``L9G2B``); several words a value on average
    is ``text``; a column of at least 80% numbers whose other values are not codes
    (``unknown``, ``n.a.``) is ``numeric`` with typos (validation names the rows); anything
    else is ``categorical``.
    """
    if pd.api.types.is_bool_dtype(values):
        return ColumnKind(CATEGORICAL, "true/false values")
    if pd.api.types.is_numeric_dtype(values):
        return ColumnKind(NUMERIC, "numbers")
    if pd.api.types.is_datetime64_any_dtype(values):
        return ColumnKind(DATE, "dates")
    sample = first_present(values, KIND_SAMPLE)
    if sample.empty:
        return ColumnKind(CATEGORICAL, "no values")
    text = sample.astype(str).str.strip()
    dates, words, numbers, leading_zero, codes = distinct_means(text, (
        lambda v: bool(DATE_PATTERN.match(v)), lambda v: len(v.split()), is_number,
        lambda v: bool(_LEADING_ZERO.fullmatch(v)),
        lambda v: not is_number(v) and bool(_CODE.fullmatch(v)),
    ))
    if dates >= DATE_SHARE:
        return ColumnKind(DATE, "dates")
    if leading_zero > 0 and numbers + codes >= NUMERIC_SHARE:
        return ColumnKind(CATEGORICAL, "codes: digits with leading zeros (read as text so "
                                       "that the zeros are kept)")
    if numbers >= NUMERIC_SHARE:
        if codes > 0 and numbers + codes >= 0.999:
            example = next(v for v in text if not is_number(v))
            return ColumnKind(CATEGORICAL, f"codes: {codes:.0%} of values carry letters "
                                           f"(e.g. '{example}') among numeric codes")
        return ColumnKind(NUMERIC, "numbers, with some text")
    if words >= TEXT_MIN_MEAN_WORDS:
        return ColumnKind(TEXT, "several words a value")
    return ColumnKind(CATEGORICAL, "labels or codes")


def column_kinds(frame: pd.DataFrame, overrides: Iterable[tuple[str, str]] = ()
                 ) -> dict[str, ColumnKind]:
    """Every column's kind: the analyst's override where given, else the inferred one."""
    given = dict(overrides)
    kinds = {}
    for column in frame.columns:
        name = str(column)
        if name in given:
            kinds[name] = ColumnKind(given[name], "set by the analyst", overridden=True)
        else:
            kinds[name] = infer_column_type(frame[column])
    return kinds


def parse_override(item: str) -> tuple[str, str]:
    """``"COL=KIND"`` as ``(COL, KIND)``; ValueError naming the kinds when it is not one."""
    column, sep, kind = str(item).rpartition("=")
    kind = kind.strip().lower()
    if not sep or not column.strip():
        raise ValueError(f"column type {item!r}: write COLUMN=KIND, e.g. icd9_code=categorical")
    if kind not in KINDS:
        raise ValueError(f"column type {item!r}: unknown kind {kind!r}; kinds: "
                         f"{', '.join(KINDS)}")
    return column.strip(), kind


def override_hint(column: str, kind: str) -> str:
    """How an analyst sets ``column``'s kind, in every place they can: a refusal ends with it."""
    return (f"set its type to {kind} (mapping form: column type; API: \"column_types\": "
            f"{{\"{column}\": \"{kind}\"}}; command: --column-type {column}={kind})")


def typed_column(values: pd.Series, kind: str | None) -> pd.Series:
    """``values`` as the encoder should read them under ``kind`` (None: as they are).

    ``categorical`` and ``text`` turn numbers into their text (so ``250.83`` is a level,
    not a magnitude); ``numeric`` reads numbers and leaves anything else missing; ``date``
    becomes days since 1970-01-01 (a number, so the encoder scales it like one).
    """
    if kind is None:
        return values
    if kind in (CATEGORICAL, TEXT):
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            from ml_core.data import label_text  # data imports this module

            return values.astype(object).map(label_text, na_action="ignore")
        return values
    if kind == NUMERIC:
        if pd.api.types.is_numeric_dtype(values):
            return values
        return pd.to_numeric(values.astype(object).map(
            lambda v: v.strip() if isinstance(v, str) else v), errors="coerce").astype(float)
    if kind == DATE:
        stamps = pd.to_datetime(values, errors="coerce", format="mixed", dayfirst=False)
        days = (stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
        return pd.Series(np.asarray(days, dtype=float), index=values.index, name=values.name)
    raise ValueError(f"unknown column kind {kind!r}; kinds: {', '.join(KINDS)}")
