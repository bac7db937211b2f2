"""Cell normalisation: stripping, missing markers, numbers (also with thousands separators
or a decimal comma), dates written several ways, codes with leading zeros kept as text, and
cells too long to be values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ml_core.tables.columns import factorize
from ml_core.tables.errors import TableReadError

# Cells that mean "no value". Deliberately not "None" or "no": those are categories.
MISSING_MARKERS = frozenset(
    {"", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "?", "#N/A"}
)
HEADER_SAMPLE_ROWS = 1000
# A longer cell is a runaway quote or an attack, not a value; long texts fit well within it.
MAX_CELL_CHARS = 100_000


def is_number(cell: str) -> bool:
    """Whether ``cell`` reads as a number (``float`` takes it)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


_LEADING_ZERO = re.compile(r"0[0-9]+")


def _leading_zero_columns(sample: pd.DataFrame) -> tuple[int, ...]:
    """Positions of the columns of ``sample`` (cells as strings) where a digit string has a
    leading zero (``007``; not ``0`` or ``0.5``)."""
    found = []
    for position in range(sample.shape[1]):
        cells = sample.iloc[:, position]
        if any(isinstance(cell, str) and _LEADING_ZERO.fullmatch(cell.strip())
               for cell in pd.unique(cells)):
            found.append(position)
    return tuple(found)


def _clean_column(column: pd.Series, delimiter: str = ",", *, as_codes: bool = False
                  ) -> tuple[pd.Series, str | None]:
    """Strip a text column, blank out missing markers, and make it numeric if it is
    (unless ``as_codes``: digits with leading zeros are codes, kept as text).

    Also returns a note when the column needed more than that: numbers with thousands
    separators or a decimal comma, dates written several ways. Every test runs once per
    distinct value (a text column repeats its values), then spreads to the rows through
    the codes of one factorisation. A text column that needs none of it is returned as it
    is (the same object), not rebuilt.
    """
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return column, None
    text = column.astype(str)
    if _mostly_distinct(text):
        # Ids, names, free text: as many distinct values as rows, so they are cleaned row
        # by row, and numbered only when the first value says numbers or dates may follow.
        first = _first_value(text)
        if first is None:
            return pd.Series(np.nan, index=column.index, dtype=float, name=column.name), None
        if not (is_number(first) or _LOCAL_NUMBER.fullmatch(first) or _date_like(first)):
            return _clean_rows(column, text), None
    codes, raw = factorize(text)
    raw = np.asarray(raw, dtype=object)
    # str.strip answers the string itself when there is nothing to strip.
    stripped = np.fromiter((value.strip() for value in raw), dtype=object, count=len(raw))
    blank = pd.Index(stripped, dtype=object).isin(MISSING_MARKERS)
    if blank.any() or (stripped != raw).any():
        stripped[blank] = np.nan
        # Values that only differed by spaces are one value now: number them again.
        distinct_codes, present = pd.factorize(stripped)
        codes = np.append(distinct_codes, -1)[codes]  # codes -1 (missing) stay -1
        cells = np.append(np.asarray(present, dtype=object), np.nan)[codes]
        values = pd.Series(cells, index=column.index, name=column.name, dtype="str")
    else:
        present = raw
        values = column if column.dtype == text.dtype else text
    missing = codes < 0
    if len(present) == 0:
        return pd.Series(np.nan, index=values.index, dtype=float, name=column.name), None
    # The present values, each once, in order of first appearance (so the first is the
    # first row's).
    present = pd.Series(present, dtype="str")
    first = present.iloc[0]
    note = None
    if as_codes:
        example = next((v for v in present if _LEADING_ZERO.fullmatch(v)), first)
        return values, (f"codes with leading zeros (e.g. '{example}'); read as text so that "
                        "the zeros are kept.")
    if is_number(first):
        numbers = _spread(pd.to_numeric(present, errors="coerce"), codes, values)
    elif _LOCAL_NUMBER.fullmatch(first):
        numbers, note = _localised_numbers(codes, values, present, delimiter)
        if numbers is None:
            return values, None
    else:
        # A text column; converting it would only fail slowly. Dates written several ways
        # are the one text rewritten, so that every later step sees one format.
        return _normalise_dates(values, present)
    if numbers.notna().sum() != (~missing).sum():
        return values, None
    with np.errstate(invalid="ignore"):  # inf is not whole: the column stays float
        whole = np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0)
    if not missing.any() and whole:
        return numbers.astype(np.int64), note
    return numbers.astype(float), note


def _mostly_distinct(text: pd.Series) -> bool:
    """Whether more than half of the first HEADER_SAMPLE_ROWS values are distinct."""
    head = text.iloc[:HEADER_SAMPLE_ROWS]
    return head.nunique() * 2 > len(head)


def _first_value(text: pd.Series) -> str | None:
    """The first cell of ``text`` that is present once stripped (not a missing marker);
    None when there is none. Reads the column a block at a time from its start."""
    for start in range(0, len(text), HEADER_SAMPLE_ROWS):
        for value in text.iloc[start:start + HEADER_SAMPLE_ROWS]:
            if isinstance(value, str) and value.strip() not in MISSING_MARKERS:
                return value.strip()
    return None


def _clean_rows(column: pd.Series, text: pd.Series) -> pd.Series:
    """``text`` (``column`` as strings) stripped and without missing markers, cell by cell
    (``column`` itself when that changes nothing)."""
    rows = text.to_numpy(dtype=object)
    present = ~pd.isna(rows)
    cells = rows[present]
    stripped = np.fromiter((value.strip() for value in cells), dtype=object, count=len(cells))
    blank = pd.Index(stripped, dtype=object).isin(MISSING_MARKERS)
    if not blank.any() and not (stripped != cells).any():
        return column if column.dtype == text.dtype else text
    stripped[blank] = np.nan
    rows = rows.copy()
    rows[present] = stripped
    return pd.Series(rows, index=column.index, name=column.name, dtype="str")


def _spread(converted: pd.Series, codes: np.ndarray, values: pd.Series) -> pd.Series:
    """``converted`` (one entry per distinct present value) as a column of ``values``'
    rows, whose ``codes`` number those values (-1: missing, and missing in the result)."""
    found = codes >= 0
    spread = converted.to_numpy()[np.where(found, codes, 0)]
    return pd.Series(spread, index=values.index, name=values.name).where(found)


# Numbers as people write them: 1,234,567.89 or 1.234.567,89 (or 1 234,5 and 1'234.5).
_LOCAL_NUMBER = re.compile(r"[+-]?\d{1,3}([,.' \u00a0\u202f]\d{3})+([.,]\d+)?|[+-]?\d+,\d+")
_GROUPED = {
    # (thousands separator, decimal mark): the pattern every value must match.
    (",", "."): re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?"),
    (".", ","): re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?"),
    (" ", ","): re.compile(r"[+-]?(\d{1,3}([ \u00a0\u202f]\d{3})+|\d+)(,\d+)?"),
    ("'", "."): re.compile(r"[+-]?(\d{1,3}('\d{3})+|\d+)(\.\d+)?"),
}


def _localised_numbers(
    codes: np.ndarray, values: pd.Series, present: pd.Series, delimiter: str
) -> tuple[pd.Series | None, str | None]:
    """Numbers written with thousands separators or a decimal comma, as floats; (None,
    None) unless every present value is such a number under one convention.

    ``1,234`` alone could be either convention: a ``;``-separated file (the usual European
    export) reads it with a decimal comma, any other with a thousands comma.
    """
    conventions = list(_GROUPED)
    if delimiter == ";":
        conventions.sort(key=lambda pair: pair[1] != ",")
    for thousands, decimal in conventions:
        pattern = _GROUPED[(thousands, decimal)]
        if not all(pattern.fullmatch(v) for v in present):
            continue
        plain = present.str.replace(thousands, "", regex=False)
        if thousands == " ":
            plain = plain.str.replace("\u00a0", "").str.replace("\u202f", "")
        if decimal == ",":
            plain = plain.str.replace(",", ".", regex=False)
        numbers = pd.to_numeric(plain, errors="coerce")
        if numbers.isna().any():
            continue
        example = present.iloc[0]
        what = (f"thousands separator '{thousands}'" if any(thousands in v for v in present)
                else "no thousands separator")
        return (_spread(numbers, codes, values),
                f"numbers written with {what} and decimal mark '{decimal}' (e.g. '{example}'); "
                "read as numbers.")
    return None, None


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(?P<mon>[A-Za-z]{3,9})\.?"
# Date shapes; d/m order is settled per column from the values (a part above 12 is a day).
_DATE_SHAPES = {
    "ymd": re.compile(r"(?P<y>\d{4})[-/.](?P<a>\d{1,2})[-/.](?P<b>\d{1,2})"),
    "dmy": re.compile(r"(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4})"),
    "d mon y": re.compile(r"(?P<d>\d{1,2})[ -]" + _MONTH + r"[ -,]*(?P<y>\d{4})"),
    "mon d y": re.compile(_MONTH + r" (?P<d>\d{1,2})(st|nd|rd|th)?,? (?P<y>\d{4})"),
}


def _normalise_dates(values: pd.Series, present: pd.Series) -> tuple[pd.Series, str | None]:
    """A column of dates written in several formats, rewritten ``YYYY-MM-DD`` with a note;
    any other text column (or dates in one format) unchanged."""
    if not _date_like(present.iloc[0]):
        return values, None
    distinct = pd.unique(present)
    shapes: dict[str, str] = {}
    for value in distinct:
        shape = next((k for k, p in _DATE_SHAPES.items() if p.fullmatch(value)), None)
        if shape is None:
            return values, None
        shapes[value] = shape
    # One format throughout (with one separator) is left for the model's own parsing.
    written = {_date_format(v, shapes[v]) for v in distinct}
    if len(written) < 2:
        return values, None
    day_first = _day_first([v for v in distinct if shapes[v] == "dmy"])
    parsed = {}
    for value in distinct:
        iso = _to_iso(value, shapes[value], day_first=day_first)
        if iso is None:
            return values, None
        parsed[value] = iso
    examples = ", ".join(f"'{v}'" for v in list(dict.fromkeys(
        next(v for v in distinct if _date_format(v, shapes[v]) == fmt) for fmt in sorted(written)
    ))[:4])
    order = "day before month" if day_first else "month before day"
    return values.map(parsed).where(values.notna()), (
        f"dates written {len(written)} ways ({examples}); read as dates and written "
        f"YYYY-MM-DD ({order} in n/n/yyyy dates).")


def _date_like(value: str) -> bool:
    """Whether ``value`` has one of the date shapes (the first value of a column that
    :func:`_normalise_dates` may rewrite)."""
    return bool(_DATE_SHAPES["ymd"].match(value)) or any(
        shape.fullmatch(value) for shape in _DATE_SHAPES.values())


def _date_format(value: str, shape: str) -> str:
    return shape + "".join(ch for ch in value if not ch.isalnum())[:2]


def _day_first(values: list[str]) -> bool:
    """Day/month order of ``dd?mm?yyyy`` values: month first only when a second part is
    above 12 and no first part is; ambiguous columns are read day first."""
    firsts, seconds = [], []
    for value in values:
        match = _DATE_SHAPES["dmy"].fullmatch(value)
        firsts.append(int(match["a"]))
        seconds.append(int(match["b"]))
    return not (any(b > 12 for b in seconds) and not any(a > 12 for a in firsts))


def _to_iso(value: str, shape: str, *, day_first: bool) -> str | None:
    match = _DATE_SHAPES[shape].fullmatch(value)
    year = int(match["y"])
    if shape == "ymd":
        month, day = int(match["a"]), int(match["b"])
    elif shape == "dmy":
        a, b = int(match["a"]), int(match["b"])
        day, month = (a, b) if day_first else (b, a)
    else:
        day = int(match["d"])
        name = match["mon"][:3].lower()
        if name not in _MONTHS:
            return None
        month = _MONTHS.index(name) + 1
    try:
        return pd.Timestamp(year=year, month=month, day=day).strftime("%Y-%m-%d")
    except ValueError:
        return None


def _check_cell_lengths(encoded: bytes, frame: pd.DataFrame, *, header: bool) -> None:
    """Refuse a cell longer than MAX_CELL_CHARS, naming its line and column; only looked
    for when some line (of the UTF-8 text ``encoded``) is that long, which costs one pass
    over the line ends."""
    if len(encoded) <= MAX_CELL_CHARS:
        return
    # A line longer than MAX_CELL_CHARS spans a whole window of half that without a line
    # end; when every window holds one (a few hundred searches), no line is that long.
    window = MAX_CELL_CHARS // 2
    if all(encoded.find(b"\n", start, start + window) >= 0
           for start in range(0, len(encoded) - window + 1, window)):
        return
    raw = np.frombuffer(encoded, dtype=np.uint8)
    ends = np.concatenate(([-1], np.flatnonzero(raw == 10), [len(raw)]))
    if len(ends) < 2 or int(np.diff(ends).max()) <= MAX_CELL_CHARS:
        return
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column):
            continue
        lengths = column.astype("object").map(lambda v: len(v) if isinstance(v, str) else 0)
        if int(lengths.max()) > MAX_CELL_CHARS:
            row = int(lengths.to_numpy().argmax()) + 1
            raise TableReadError(
                "cell_too_long",
                f"Row {row} (line {row + int(header)}), column '{name}' holds a value of "
                f"{int(lengths.max()):,} characters; the limit is {MAX_CELL_CHARS:,}. Is a "
                "closing quote missing?", column=str(name), rows=(row,),
            )
