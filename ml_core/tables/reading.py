"""Reading a table: :func:`read_table` decodes, sniffs, checks the shape, parses with
pandas' C engine and cleans the cells and names (see :mod:`ml_core.tables`)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml_core.tables.cells import (
    HEADER_SAMPLE_ROWS,
    MISSING_MARKERS,
    _check_cell_lengths,
    _clean_column,
    _leading_zero_columns,
)
from ml_core.tables.compressed import _GZIP, MAX_UNCOMPRESSED_BYTES, gunzip_table
from ml_core.tables.encodings import _blank, _decode
from ml_core.tables.errors import TableReadError
from ml_core.tables.names import _clean_names, _refuse_duplicates, _repair_blank_names
from ml_core.tables.sniffing import (
    MAX_COLUMNS,
    WHITESPACE,
    _check_shape,
    _looks_like_header,
    _normalise_sep,
    _sniff_delimiter,
    _unclosed_quote,
    _unclosed_quote_line,
)


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
    max_columns: int = MAX_COLUMNS,
    max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES,
) -> tuple[pd.DataFrame, TableReadOptions]:
    """Read a delimited text table into a DataFrame, working out how it is written.

    ``sep``, ``header`` and ``encoding`` override what would be detected. Without a
    header the columns are named ``column_1`` .. ``column_N``. Cells are stripped;
    empty cells and common missing markers (``NA``, ``?``, ...) become missing; a
    column whose values are all numbers becomes ``int64`` (no missing values, all
    whole) or ``float64``; so does one written with thousands separators or a decimal
    comma, and a column of dates written several ways is rewritten ``YYYY-MM-DD`` (both
    noted). The index is ``0..n-1`` in file order.

    Raises :class:`TableReadError` with code ``empty``, ``binary``, ``undecodable``,
    ``bad_option``, ``wrong_delimiter``, ``ragged``,
    ``too_many_columns``, ``cell_too_long``, ``duplicate_columns``, ``no_rows``,
    ``unclosed_quote``, ``unparseable`` or ``compressed_too_large`` (a gzip-compressed
    table past ``max_uncompressed_bytes`` or :data:`MAX_COMPRESSION_RATIO`).
    """
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    gzipped = data.startswith(_GZIP)
    if gzipped:
        data = gunzip_table(data, max_bytes=max_uncompressed_bytes)
    text, used_encoding, decode_notes = _decode(data, encoding)
    # What the parser reads: the text as UTF-8, which a UTF-8 file already is.
    encoded = data if used_encoding == "utf-8" else None
    # One line convention from here on, so that reported line numbers are the file's.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        encoded = None
    if _blank(text):
        raise TableReadError("empty", "The file is empty.")

    delimiter = _normalise_sep(sep) if sep is not None else _sniff_delimiter(text)
    left_to_parser = _check_shape(text, delimiter, max_columns=max_columns, encoded=encoded)
    try:
        frame, header, notes = _read_rows(text, delimiter, header, encoded)
    except TableReadError:
        if left_to_parser:
            # The parser stops at a line longer than the first ones: name every odd line.
            _check_shape(text, delimiter, max_columns=max_columns, thorough=True)
        raise
    frame.index = pd.RangeIndex(len(frame))
    notes = [*decode_notes, *notes]
    if gzipped:
        notes = [f"The file was gzip-compressed ({len(data):,} bytes decompressed).", *notes]
    options = TableReadOptions(
        delimiter=delimiter, encoding=used_encoding, header=bool(header), notes=tuple(notes)
    )
    return frame, options


def _read_rows(text: str, delimiter: str, header: bool | None, encoded: bytes | None = None
               ) -> tuple[pd.DataFrame, bool, list[str]]:
    """The table of a text whose shape was checked: (frame, header, notes). ``encoded`` is
    ``text`` as UTF-8 when the caller has it."""
    if encoded is None:
        encoded = text.encode("utf-8")  # what the parser reads, encoded once
    # Header detection and column names only need the first rows, read as plain strings.
    sample = _parse(text, encoded, delimiter, header=False, as_strings=True,
                    nrows=HEADER_SAMPLE_ROWS + 1)
    if header is None:
        header = _looks_like_header(sample)
    notes: list[str] = []
    if header:
        names = _clean_names(sample.iloc[0].tolist(), notes)
        _refuse_duplicates(names)
    else:
        names = [f"column_{k}" for k in range(1, sample.shape[1] + 1)]

    # The whole file: pandas' C engine infers numeric columns far faster than converting
    # strings afterwards; only the text columns are cleaned here. Codes written with
    # leading zeros (DRG 001, ids 00004, postcodes 02139) stay text: as numbers they would
    # lose the zeros, and 001 and 01 would become one code.
    coded = _leading_zero_columns(sample.iloc[1:] if header else sample)
    frame = _parse(text, encoded, delimiter, header=bool(header), as_strings=False,
                   text_columns=coded)
    if frame.empty:
        raise TableReadError(
            "no_rows", "The file has a header but no data rows." if header
            else "The file has no data rows.",
        )
    # By position: blank names may repeat until they are repaired below. Only the columns
    # that cleaning changed are replaced; the parser's blocks are kept, not copied.
    column_notes = []
    for k in range(frame.shape[1]):
        column = frame.iloc[:, k]
        clean, note = _clean_column(column, delimiter, as_codes=k in coded)
        if clean is not column:
            frame.isetitem(k, clean)
        column_notes.append(note)
    frame.columns = names
    _check_cell_lengths(encoded, frame, header=bool(header))
    notes.extend(f"Column '{name}': {note}" for name, note in zip(names, column_notes,
                                                                  strict=True) if note)
    if header:
        frame = _repair_blank_names(frame, notes)
    return frame, bool(header), notes


def _parse(
    text: str, encoded: bytes, delimiter: str, *, header: bool, as_strings: bool,
    nrows: int | None = None, text_columns: tuple[int, ...] = (),
) -> pd.DataFrame:
    """Parse ``encoded`` (``text`` as UTF-8: the C engine tokenises bytes directly);
    the columns at positions ``text_columns`` are read as text."""
    # Spaces before a value matter to the parser only before a quote (which then opens a
    # quoted value): numbers parse with them, and _clean_column strips text and finds
    # missing markers among stripped values. Skipping them costs a quarter of a parse.
    options: dict = {"dtype": str, "na_filter": False} if as_strings else {
        "na_values": sorted(MISSING_MARKERS), "keep_default_na": False,
        "skipinitialspace": '"' in text,
    }
    try:
        return pd.read_csv(
            io.BytesIO(encoded),
            encoding="utf-8",
            sep=r"\s+" if delimiter == WHITESPACE else delimiter,
            header=0 if header else None,
            skip_blank_lines=True,
            index_col=False,
            nrows=nrows,
            engine="c",
            **_text_dtypes(text, encoded, delimiter, header=header, positions=text_columns),
            **options,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        line = _unclosed_quote_line(text) if "EOF inside string" in str(exc) else None
        if line is not None:
            raise _unclosed_quote(line) from exc
        raise TableReadError("unparseable", f"The table could not be parsed: {exc}") from exc


def _text_dtypes(text: str, encoded: bytes, delimiter: str, *, header: bool,
                 positions: tuple[int, ...]) -> dict:
    """``read_csv``'s ``dtype`` keyword reading the columns at ``positions`` as text: keyed
    by position without a header, else by the parser's own names for them."""
    if not positions:
        return {}
    if not header:
        return {"dtype": dict.fromkeys(positions, str)}
    names = list(pd.read_csv(io.BytesIO(encoded), encoding="utf-8", nrows=0, index_col=False,
                             sep=r"\s+" if delimiter == WHITESPACE else delimiter).columns)
    return {"dtype": {names[k]: str for k in positions if k < len(names)}}
