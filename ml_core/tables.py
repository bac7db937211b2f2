"""Reading uploaded tables of any shape.

Users upload files as their systems export them: any of ``, ; tab |`` or runs of
spaces as separators, with or without a header, UTF-8 with or without a BOM or a
Windows code page, CRLF line ends, no final newline. :func:`read_table` works out each
of these (or takes them as overrides), parses with pandas' C engine (faster here than
the pyarrow engine) and refuses what it cannot read with a :class:`TableReadError`
whose ``code`` a program can act on and whose ``message`` a person can.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# Runs of spaces or tabs; reported and accepted as " ".
WHITESPACE = " "
# Tried in this order: characters that rarely appear inside values come first, so a
# tab- or ';'-separated file whose text happens to contain commas is not split on them.
DELIMITERS = ("\t", ";", "|", ",", WHITESPACE)
SEP_ALIASES = {"tab": "\t", "\\t": "\t", "space": WHITESPACE, "whitespace": WHITESPACE,
               "\\s+": WHITESPACE, "comma": ",", "semicolon": ";", "pipe": "|"}
# Cells that mean "no value". Deliberately not "None" or "no": those are categories.
MISSING_MARKERS = frozenset(
    {"", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "?", "#N/A"}
)
SNIFF_LINES = 200
HEADER_SAMPLE_ROWS = 1000
MAX_LISTED = 20
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")


class TableReadError(ValueError):
    """A table that cannot be read; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class TableReadOptions:
    """How a table was read; passing these back to :func:`read_table` reads it the same way."""

    delimiter: str
    encoding: str
    header: bool
    notes: tuple[str, ...] = ()  # what was repaired on the way (e.g. a blank column name)

    def to_dict(self) -> dict:
        return {
            "delimiter": self.delimiter,
            "encoding": self.encoding,
            "header": self.header,
            "notes": list(self.notes),
        }


def read_table(
    source: bytes | Path,
    *,
    sep: str | None = None,
    header: bool | None = None,
    encoding: str | None = None,
) -> tuple[pd.DataFrame, TableReadOptions]:
    """Read a delimited text table into a DataFrame, working out how it is written.

    ``sep``, ``header`` and ``encoding`` override what would be detected. Without a
    header the columns are named ``column_1`` .. ``column_N``. Cells are stripped;
    empty cells and common missing markers (``NA``, ``?``, ...) become missing; a
    column whose values are all numbers becomes ``int64`` (no missing values, all
    whole) or ``float64``. The index is ``0..n-1`` in file order.

    Raises :class:`TableReadError` with code ``empty``, ``binary``, ``undecodable``,
    ``bad_option``, ``ragged``, ``duplicate_columns``, ``no_rows`` or ``unparseable``.
    """
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    text, used_encoding = _decode(data, encoding)
    # One line convention from here on, so that reported line numbers are the file's.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise TableReadError("empty", "The file is empty.")

    delimiter = _normalise_sep(sep) if sep is not None else _sniff_delimiter(text)
    _check_ragged(text, delimiter)
    # Header detection and column names only need the first rows, read as plain strings.
    sample = _parse(text, delimiter, header=False, as_strings=True, nrows=HEADER_SAMPLE_ROWS + 1)
    if header is None:
        header = _looks_like_header(sample)
    notes: list[str] = []
    if header:
        names = [_clean_name(v) for v in sample.iloc[0].tolist()]
        _refuse_duplicates(names)
    else:
        names = [f"column_{k}" for k in range(1, sample.shape[1] + 1)]

    # The whole file: pandas' C engine infers numeric columns far faster than converting
    # strings afterwards; only the text columns are cleaned here.
    frame = _parse(text, delimiter, header=bool(header), as_strings=False)
    if frame.empty:
        raise TableReadError(
            "no_rows", "The file has a header but no data rows." if header
            else "The file has no data rows.",
        )
    # By position: blank names may repeat until they are repaired below.
    frame = pd.concat(
        [_clean_column(frame.iloc[:, k]) for k in range(frame.shape[1])], axis=1, ignore_index=True
    )
    frame.columns = names
    if header:
        frame = _repair_blank_names(frame, notes)
    frame.index = pd.RangeIndex(len(frame))
    options = TableReadOptions(
        delimiter=delimiter, encoding=used_encoding, header=bool(header), notes=tuple(notes)
    )
    return frame, options


def _decode(data: bytes, encoding: str | None) -> tuple[str, str]:
    if not data.strip():
        raise TableReadError("empty", "The file is empty.")
    if data.startswith(b"PK\x03\x04"):
        raise TableReadError(
            "binary",
            "This looks like an Excel or zip file; export the sheet as CSV and upload that.",
        )
    if encoding is not None:
        name = encoding.lower().replace("_", "-")
        if name in ("utf-8", "utf8") and data.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8-sig"
        try:
            text = data.decode(encoding)
        except LookupError as exc:
            raise TableReadError("bad_option", f"Unknown encoding '{encoding}'.") from exc
        except UnicodeDecodeError as exc:
            raise TableReadError(
                "undecodable",
                f"The file is not valid {encoding}: byte {exc.start + 1} cannot be decoded. "
                "Choose another encoding or save the file as UTF-8.",
            ) from exc
        _refuse_binary_text(text)
        return text, encoding
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise TableReadError("undecodable", "The file starts like UTF-16 but is not.") from exc
    if b"\x00" in data:
        raise TableReadError(
            "binary", "The file contains binary data (NUL bytes), not a text table."
        )
    for candidate in ("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8", "cp1252"):
        try:
            text = data.decode(candidate)
            break
        except UnicodeDecodeError:
            continue
    else:
        # Latin-1 maps every byte, so this always succeeds.
        candidate, text = "latin-1", data.decode("latin-1")
    _refuse_binary_text(text)
    return text, candidate


def _refuse_binary_text(text: str) -> None:
    sample = text[:65536]
    if "\x00" in sample or len(_CONTROL.findall(sample)) > max(3, len(sample) // 100):
        raise TableReadError("binary", "The file contains binary data, not a text table.")


def _normalise_sep(sep: str) -> str:
    sep = SEP_ALIASES.get(sep.lower(), sep) if sep.strip() else WHITESPACE
    if len(sep) != 1 or sep in "\"\n\r":
        raise TableReadError(
            "bad_option", f"Separator {sep!r} is not supported; use one character, 'tab' or ' '."
        )
    return sep


def _field_counts(lines: list[str], delimiter: str) -> list[int]:
    if delimiter == WHITESPACE:
        return [len(line.split()) for line in lines]
    if '"' not in "".join(lines):
        return [line.count(delimiter) + 1 for line in lines]
    return [len(row) for row in csv.reader(lines, delimiter=delimiter) if row]


def _sniff_delimiter(text: str) -> str:
    lines = [line for line in text.split("\n", SNIFF_LINES * 2)[: SNIFF_LINES * 2] if line.strip()]
    lines = lines[:SNIFF_LINES]
    best, best_share = ",", 0.0
    for candidate in DELIMITERS:
        counts = _field_counts(lines, candidate)
        if not counts:
            continue
        mode, hits = Counter(counts).most_common(1)[0]
        share = hits / len(counts)
        if mode > 1 and share > best_share + 1e-9:
            best, best_share = candidate, share
    return best


def _line_field_counts(text: str, delimiter: str) -> tuple[np.ndarray, np.ndarray]:
    """(1-based line numbers, field counts) of the non-blank lines, counted on bytes.

    Vectorised because a per-line Python loop costs seconds on a large upload. Only
    valid without quoting (a quoted field may hold separators or newlines).
    """
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    line_ends = np.concatenate((newlines, [len(raw)]))
    lengths = np.diff(np.concatenate(([-1], line_ends))) - 1

    def per_line(positions: np.ndarray) -> np.ndarray:
        # Searching the (fewer) line ends among the positions is cheaper than the reverse.
        return np.diff(np.concatenate(([0], np.searchsorted(positions, line_ends))))

    spaces = (raw == 32) | (raw == 9)
    has_content = lengths - per_line(np.flatnonzero(spaces)) > 0
    if delimiter == WHITESPACE:
        # A field starts where a non-blank byte follows a blank one (or a line start).
        gap = spaces | (raw == 10)
        counts = per_line(np.flatnonzero(~gap & np.concatenate(([True], gap[:-1]))))
    else:
        counts = per_line(np.flatnonzero(raw == ord(delimiter))) + 1
    lines = np.flatnonzero(has_content)
    return lines + 1, counts[lines]


def _records(text: str, delimiter: str) -> list[tuple[int, int]]:
    """(1-based line number where the record starts, number of fields) per non-blank record."""
    if delimiter == WHITESPACE or '"' not in text:
        if ord(delimiter) < 128:
            lines, counts = _line_field_counts(text, delimiter)
            return list(zip(lines.tolist(), counts.tolist(), strict=True))
        return [
            (i + 1, line.count(delimiter) + 1)
            for i, line in enumerate(text.split("\n")) if line.strip()
        ]
    out = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    start = 1
    for row in reader:
        if row and any(cell.strip() for cell in row):
            out.append((start, len(row)))
        start = reader.line_num + 1
    return out


def _check_ragged(text: str, delimiter: str) -> None:
    records = _records(text, delimiter)
    if not records:
        raise TableReadError("empty", "The file is empty.")
    expected = records[0][1]
    bad = [(line, n) for line, n in records if n != expected]
    if bad:
        listed = ", ".join(f"line {line} has {n}" for line, n in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        raise TableReadError(
            "ragged",
            f"Rows have different numbers of fields: line {records[0][0]} has {expected}; "
            f"{listed}{more}. Check the separator ({_describe(delimiter)}) and quoting.",
        )


def _describe(delimiter: str) -> str:
    return {"\t": "tab", WHITESPACE: "spaces"}.get(delimiter, repr(delimiter))


def _parse(
    text: str, delimiter: str, *, header: bool, as_strings: bool, nrows: int | None = None
) -> pd.DataFrame:
    options: dict = {"dtype": str, "na_filter": False} if as_strings else {
        "na_values": sorted(MISSING_MARKERS), "keep_default_na": False,
        "skipinitialspace": True,
    }
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=r"\s+" if delimiter == WHITESPACE else delimiter,
            header=0 if header else None,
            skip_blank_lines=True,
            index_col=False,
            nrows=nrows,
            engine="c",
            **options,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise TableReadError("unparseable", f"The table could not be parsed: {exc}") from exc


def _clean_name(value: object) -> str:
    return str(value).replace("\ufeff", "").strip()


def _refuse_duplicates(names: list[str]) -> None:
    duplicates = sorted(name for name, n in Counter(names).items() if n > 1 and name)
    if duplicates:
        raise TableReadError(
            "duplicate_columns",
            "Column names must be unique; repeated: " + ", ".join(f"'{d}'" for d in duplicates),
        )


def _repair_blank_names(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    keep, names = [], []
    for k, name in enumerate(frame.columns, start=1):
        if not name:
            if frame.iloc[:, k - 1].isna().all():
                # A trailing separator on every line: an empty column, not data.
                notes.append(f"Dropped column {k}: no name and no values.")
                continue
            name = f"column_{k}"
            notes.append(f"Column {k} has no name; called it '{name}'.")
        keep.append(k - 1)
        names.append(name)
    _refuse_duplicates(names)  # 'column_2' may already be taken
    repaired = frame.iloc[:, keep]
    repaired.columns = names
    return repaired


def _missing_mask(values: pd.Series) -> pd.Series:
    return values.isin(MISSING_MARKERS)


def _numeric_share(values: pd.Series) -> float:
    """Share of the non-missing stripped cells that are numbers."""
    present = values[~_missing_mask(values)]
    if present.empty:
        return 0.0
    return float(pd.to_numeric(present, errors="coerce").notna().mean())


def _clean_column(column: pd.Series) -> pd.Series:
    """Strip a text column, blank out missing markers, and make it numeric if it is."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return column
    values = column.astype(str).str.strip().where(column.notna())
    missing = values.isna() | _missing_mask(values)
    if missing.all():
        return pd.Series(np.nan, index=values.index, dtype=float, name=column.name)
    values = values.where(~missing)
    first = values[~missing].iloc[0]
    if not _is_number(first):
        return values  # a text column; converting it would only fail slowly
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() != (~missing).sum():
        return values
    if not missing.any() and np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0):
        return numbers.astype(np.int64)
    return numbers.astype(float)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _looks_like_header(raw: pd.DataFrame) -> bool:
    """Decide whether the first row names the columns.

    Strong evidence: a text cell above a column of numbers means a header (unless more
    columns have a number above numbers, as when a data row has a stray text value);
    a number above numbers means data. With no numeric columns to go on, the first row
    is data when every cell recurs in its column or has the shape of its column's coded
    values (``A11`` above ``A12``, ``A14``): header names are neither.
    """
    if len(raw) < 2:
        first = [c.strip() for c in raw.iloc[0].tolist()]
        return not any(_is_number(c) for c in first if c not in MISSING_MARKERS)
    first = raw.iloc[0].astype(str).str.strip()
    rest = raw.iloc[1 : HEADER_SAMPLE_ROWS + 1]
    header_votes = data_votes = 0
    all_data_like = True
    for j in range(raw.shape[1]):
        cell = first.iloc[j]
        below = rest.iloc[:, j].astype(str).str.strip()
        if cell in MISSING_MARKERS:
            continue
        share = _numeric_share(below)
        if share >= 0.8:
            if _is_number(cell):
                data_votes += 1
            else:
                header_votes += 1
                all_data_like = False
            continue
        if not ((below == cell).any() or _same_shape(cell, below)):
            all_data_like = False
    if header_votes or data_votes:
        return header_votes > data_votes
    non_missing = [c for c in first if c not in MISSING_MARKERS]
    if len(set(non_missing)) < len(non_missing):
        return False  # header names are unique
    return not all_data_like


def _shape(cell: str) -> str:
    return re.sub(r"[a-z]", "a", re.sub(r"[A-Z]", "A", re.sub(r"\d", "9", cell)))


def _same_shape(cell: str, below: pd.Series) -> bool:
    """A coded value (letters and digits) with the shape most of its column has."""
    if not any(ch.isdigit() for ch in cell):
        return False
    shapes = below.map(_shape)
    return bool((shapes == _shape(cell)).mean() >= 0.5)
