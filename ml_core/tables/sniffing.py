"""Format sniffing: the separator, the shape of the rows (too wide, ragged, one column that
another separator would split, an unclosed quote) and whether the first row is a header."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter

import numpy as np
import pandas as pd

from ml_core.tables.cells import HEADER_SAMPLE_ROWS, MISSING_MARKERS, is_number
from ml_core.tables.columns import distinct_mean
from ml_core.tables.errors import TableReadError

# Runs of spaces or tabs; reported and accepted as " ".
WHITESPACE = " "
# Tried in this order: characters that rarely appear inside values come first, so a
# tab- or ';'-separated file whose text happens to contain commas is not split on them.
DELIMITERS = ("\t", ";", "|", ",", WHITESPACE)
SEP_ALIASES = {"tab": "\t", "\\t": "\t", "space": WHITESPACE, "whitespace": WHITESPACE,
               "\\s+": WHITESPACE, "comma": ",", "semicolon": ";", "pipe": "|"}
SNIFF_LINES = 200
MAX_LISTED = 20
# Wider tables are refused before they are parsed (the platform passes its own setting).
MAX_COLUMNS = 2000
# Separators tried when a file reads as one column; not ':' or '/', which times and dates hold.
_OTHER_SEPARATORS = (";", ",", "|", "\t", "#", "~", "^", "!")


def _first_lines(text: str, n: int) -> list[str]:
    """``text.split("\n", n)[:n]``, without copying the rest of a large text as ``split``
    does with its last part."""
    lines: list[str] = []
    start = 0
    while len(lines) < n:
        end = text.find("\n", start)
        if end < 0:
            lines.append(text[start:])
            break
        lines.append(text[start:end])
        start = end + 1
    return lines


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
    lines = [line for line in _first_lines(text, SNIFF_LINES * 2) if line.strip()]
    lines = lines[:SNIFF_LINES]
    best, best_share = ",", 0.0
    for candidate in DELIMITERS:
        counts = _field_counts(lines, candidate)
        # A candidate under which a quote opens mid-file and swallows the following lines
        # (a quoted header name holding a tab, read as tab-separated) is not the separator.
        if not counts or len(counts) < len(lines) // 2:
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


def _records(text: str, delimiter: str) -> tuple[np.ndarray, np.ndarray]:
    """(1-based line numbers where the records start, numbers of fields) of the non-blank
    records."""
    if delimiter == WHITESPACE or '"' not in text:
        if ord(delimiter) < 128:
            return _line_field_counts(text, delimiter)
        pairs = [(i + 1, line.count(delimiter) + 1)
                 for i, line in enumerate(text.split("\n")) if line.strip()]
    else:
        pairs = []
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        start = 1
        for row in reader:
            if row and any(cell.strip() for cell in row):
                pairs.append((start, len(row)))
            start = reader.line_num + 1
    table = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return table[:, 0], table[:, 1]


def _count(text: str, char: str, encoded: bytes | None) -> int:
    """``text.count(char)``; counted on ``encoded`` (``text`` as UTF-8), a block at a time,
    when given and ``char`` is ASCII (no byte of a longer UTF-8 character is): many times
    faster than ``str.count`` for a character as frequent as a separator."""
    if encoded is None or ord(char) >= 128:
        return text.count(char)
    raw = np.frombuffer(encoded, dtype=np.uint8)
    code, block = ord(char), 1 << 20
    return sum(int(np.count_nonzero(raw[start:start + block] == code))
               for start in range(0, len(raw), block))


def _even_fields(text: str, delimiter: str, encoded: bytes | None = None) -> int | None:
    """The number of fields of every line, when counting the separators shows that no
    line has fewer than the first lines do and the parser will stop at any that has more;
    None when each line must be counted (quotes, runs of spaces, blank or odd lines).

    The C parser refuses a line with more fields than the lines before it; a line with
    fewer it would pad. When the first lines agree on ``n`` fields and the file holds
    ``n - 1`` separators per line in all, no line can have fewer without another having
    more. Counting a separator costs a fraction of finding each line's.
    """
    if delimiter == WHITESPACE or '"' in text:
        return None
    parts = _first_lines(text, SNIFF_LINES + 1)
    head = parts[:SNIFF_LINES] if len(parts) > SNIFF_LINES else parts[:len(parts) - (
        text.endswith("\n"))]
    expected = head[0].count(delimiter) + 1
    if expected < 2 or any(line.count(delimiter) + 1 != expected for line in head):
        return None
    lines = _count(text, "\n", encoded) + (not text.endswith("\n"))
    return expected if _count(text, delimiter, encoded) + lines == expected * lines else None


def _check_shape(text: str, delimiter: str, *, max_columns: int,
                 thorough: bool = False, encoded: bytes | None = None) -> bool:
    """Refuse a table that is too wide, read as one column with another separator in
    every line, or whose rows have different numbers of fields.

    Returns True when a longer line is left to the parser to find (see
    :func:`_even_fields`); ``thorough`` counts every line's fields. ``encoded`` is ``text``
    as UTF-8, when the caller has it.
    """
    expected = None if thorough else _even_fields(text, delimiter, encoded)
    if expected is not None:
        if expected > max_columns:
            raise TableReadError(
                "too_many_columns",
                f"Line 1 has {expected:,} fields; the limit is {max_columns:,} columns.",
            )
        return True
    lines, counts = _records(text, delimiter)
    if not len(lines):
        raise TableReadError("empty", "The file is empty.")
    first, expected = int(lines[0]), int(counts[0])
    if expected > max_columns:
        raise TableReadError(
            "too_many_columns",
            f"Line {first} has {expected:,} fields; the limit is {max_columns:,} columns.",
        )
    if expected == 1:
        _refuse_one_column(text, delimiter)
    bad = np.flatnonzero(counts != expected)
    if len(bad) and '"' in text and (opened := _unclosed_quote_line(text)) is not None:
        raise _unclosed_quote(opened)
    if len(bad):
        listed = ", ".join(f"line {lines[k]} has {counts[k]}" for k in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        raise TableReadError(
            "ragged",
            f"Rows have different numbers of fields: line {first} has {expected}; "
            f"{listed}{more}. Check the separator ({_describe(delimiter)}) and quoting.",
        )
    return False


def _refuse_one_column(text: str, delimiter: str) -> None:
    lines = [line for line in _first_lines(text, SNIFF_LINES) if line.strip()]
    if len(lines) < 2:
        return
    for candidate in _OTHER_SEPARATORS:
        if candidate == delimiter:
            continue
        counts = {line.count(candidate) for line in lines}
        if len(counts) == 1 and (n := counts.pop()) >= 1:
            raise TableReadError(
                "wrong_delimiter",
                f"With {_describe(delimiter)} as the separator the file has one column, but "
                f"every line has {n} {_describe(candidate)}: choose {_describe(candidate)} "
                "as the separator.",
            )


def _describe(delimiter: str) -> str:
    return {"\t": "tab", WHITESPACE: "spaces"}.get(delimiter, repr(delimiter))


def _unclosed_quote(line: int) -> TableReadError:
    return TableReadError(
        "unclosed_quote",
        f"A quoted value that starts on line {line} is never closed: add the missing closing "
        'quote (").',
    )


def _unclosed_quote_line(text: str) -> int | None:
    """The line where the quote that runs to the end of the file opens; None if none does."""
    opened_at, inside = None, False
    for number, line in enumerate(text.split("\n"), start=1):
        if line.count('"') % 2:
            inside = not inside
            opened_at = number if inside else None
    return opened_at if inside else None


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
        return not any(is_number(c) for c in first if c not in MISSING_MARKERS)
    # Plain lists of stripped cells, column by column, and every column's share of numbers
    # from one conversion: a thousand rows do not need thirty rounds of pandas calls.
    cells = raw.iloc[: HEADER_SAMPLE_ROWS + 1].to_numpy(dtype=object)
    # (A missing cell, NaN, stays as it is.)
    first = [cell.strip() if isinstance(cell, str) else cell for cell in cells[0]]
    columns = [[cell.strip() if isinstance(cell, str) else cell for cell in cells[1:, j]]
               for j in range(cells.shape[1])]
    shares = _numeric_shares(columns)
    header_votes = data_votes = 0
    all_data_like = True
    for cell, below, share in zip(first, columns, shares, strict=True):
        if cell in MISSING_MARKERS:
            continue
        if share >= 0.8:
            if is_number(cell):
                data_votes += 1
            else:
                header_votes += 1
                all_data_like = False
            continue
        if not ((isinstance(cell, str) and cell in set(below))
                or _same_shape(cell, pd.Series(below, dtype="str"))):
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
    shape = _shape(cell)
    return distinct_mean(below, lambda value: _shape(value) == shape) >= 0.5


def _numeric_shares(columns: list[list]) -> list[float]:
    """For each column (a list of stripped cells), the share of its non-missing cells that
    are numbers (``pd.to_numeric`` of them all at once)."""
    present = [[cell for cell in column if cell not in MISSING_MARKERS] for column in columns]
    cells = [cell for column in present for cell in column]
    if not cells:
        return [0.0] * len(columns)
    numbers = pd.to_numeric(pd.Series(cells, dtype="str"), errors="coerce").notna().to_numpy()
    shares, start = [], 0
    for column in present:
        end = start + len(column)
        shares.append(float(numbers[start:end].mean()) if column else 0.0)
        start = end
    return shares
