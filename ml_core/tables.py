"""Reading uploaded tables of any shape.

Users upload files as their systems export them: any of ``, ; tab |`` or runs of
spaces as separators, with or without a header, UTF-8 with or without a BOM or a
Windows code page, CRLF line ends, no final newline. :func:`read_table` works out each
of these (or takes them as overrides), parses with pandas' C engine (faster here than
the pyarrow engine) and refuses what it cannot read with a :class:`TableReadError`
whose ``code`` a program can act on and whose ``message`` a person can.

Hostile files get a precise refusal, never a half-read table: spreadsheets, archives and
other compressed files are named from their signature (and never unpacked), NUL bytes, mixed
encodings, runaway lines and over-wide tables are refused naming the line, and column
names that look alike (``age`` and Cyrillic ``аge``) are refused. What can be read
safely is read and noted in :attr:`TableReadOptions.notes`: numbers with thousands
separators or decimal commas, dates written several ways, names with invisible
direction marks.

A gzip-compressed table (``.csv.gz``, as MIMIC-IV ships) is the one compressed form read:
it is decompressed in bounded chunks, and refused as soon as it grows past the caller's
byte limit or compresses more than :data:`MAX_COMPRESSION_RATIO` to one (a gzip bomb
costs no more than that limit); a gzip inside a gzip is refused.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
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
# Wider tables are refused before they are parsed (the platform passes its own setting).
MAX_COLUMNS = 2000
# A longer cell is a runaway quote or an attack, not a value; long texts fit well within it.
MAX_CELL_CHARS = 100_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")
# Characters that change how text is shown without being seen: bidi embeddings, overrides
# and isolates, zero-width spaces and joiners, the BOM, soft hyphens. No name needs them.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# Separators tried when a file reads as one column; not ':' or '/', which times and dates hold.
_OTHER_SEPARATORS = (";", ",", "|", "\t", "#", "~", "^", "!")
# Signatures of files that are not text tables, and what to call them.
_SIGNATURES = (
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"(\xb5/\xfd", "a zstd-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls) or another old "
                                          "Office document"),
    (b"%PDF-", "a PDF document"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_NEVER_UNPACKED = ("Compressed files other than gzip are never unpacked on the server.")
_GZIP = b"\x1f\x8b"
# A table larger than this once decompressed is refused (the platform passes its upload
# limit); tables compress 3-20x, a gzip bomb 1000x and more (the image archives' limit).
MAX_UNCOMPRESSED_BYTES = 200 * 2**20
MAX_COMPRESSION_RATIO = 200
_GZIP_CHUNK = 2**20
# Below this many decompressed bytes no ratio is held against a file (a column of zeros
# compresses past 200x, and 16 MiB is no bomb).
_RATIO_FREE_BYTES = 16 * 2**20


class TableReadError(ValueError):
    """A table that cannot be read; ``code`` is stable, ``message`` is for people, and
    ``column`` and ``rows`` (1-based data rows) say where, when one place is at fault."""

    def __init__(self, code: str, message: str, *, column: str | None = None,
                 rows: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.column = column
        self.rows = rows

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "column": self.column,
                "rows": list(self.rows)}


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


def gunzip_table(data: bytes, *, max_bytes: int = MAX_UNCOMPRESSED_BYTES) -> bytes:
    """The bytes inside gzip-compressed ``data`` (every member, as ``gzip`` reads them),
    decompressed at most :data:`_GZIP_CHUNK` bytes at a time and refused (``TableReadError``
    ``compressed_too_large``) once past ``max_bytes`` or :data:`MAX_COMPRESSION_RATIO`
    times ``data``'s size, so a bomb never grows in memory beyond that; ``binary`` when the
    stream is corrupt or holds another compressed file."""
    limit = _gzip_limit(len(data), max_bytes)
    out = bytearray()
    rest = data
    while rest:
        stream = zlib.decompressobj(wbits=31)
        pending = rest
        try:
            while pending:
                out += stream.decompress(pending, _GZIP_CHUNK)
                pending = stream.unconsumed_tail
                if len(out) > limit:
                    _refuse_gzip_size(len(data), max_bytes=max_bytes)
            if not stream.eof:
                raise TableReadError("binary", "The gzip file is truncated: its end is "
                                     "missing. Compress the table again and upload it.")
        except zlib.error as exc:
            raise TableReadError("binary", f"The gzip file is corrupt ({exc}). Compress the "
                                 "table again and upload it.") from None
        rest = stream.unused_data.lstrip(b"\x00")  # members one after another, as gzip writes
        if rest and not rest.startswith(_GZIP):
            break  # trailing garbage after the last member: ignored, as gzip does
    if bytes(out[:2]) == _GZIP:
        raise TableReadError("binary", "This gzip file holds another gzip file. Decompress "
                             "it once and upload the table inside.")
    return bytes(out)


def _refuse_gzip_size(size: int, *, max_bytes: int) -> None:
    raise TableReadError(
        "compressed_too_large",
        f"This gzip-compressed file of {size:,} bytes decompresses to more than "
        f"{_gzip_limit(size, max_bytes):,} bytes (at most {max_bytes:,} bytes, and "
        f"{MAX_COMPRESSION_RATIO} times its compressed size past {_RATIO_FREE_BYTES:,}, are "
        "read). Upload a smaller table, or split it.")


def _gzip_limit(size: int, max_bytes: int) -> int:
    return min(int(max_bytes), max(MAX_COMPRESSION_RATIO * size, _RATIO_FREE_BYTES))


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


def _blank(text: str | bytes) -> bool:
    """Whether ``text`` holds nothing but white space (``not text.strip()``, without copying
    a large text)."""
    return not text or text.isspace()


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


def _decode(data: bytes, encoding: str | None) -> tuple[str, str, list[str]]:
    """(text, the encoding read, notes on how: the lines of a mixed file)."""
    if _blank(data):
        raise TableReadError("empty", "The file is empty.")
    _refuse_other_formats(data)
    if encoding == MIXED_ENCODING and (mixed := _mixed_lines(data)) is not None:
        return mixed[0], MIXED_ENCODING, [_mixed_note(mixed[1])]
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
        return text, encoding, []
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise TableReadError("undecodable", "The file starts like UTF-16 but is not.") from exc
        _refuse_binary_text(text)
        return text, "utf-16", []
    if b"\x00" in data:
        position = data.index(b"\x00")
        line = data.count(b"\n", 0, position) + 1
        raise TableReadError(
            "binary",
            f"The file contains binary data, not a text table: a NUL byte on line {line} "
            f"(byte {position + 1}).",
        )
    for candidate in ("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8", "cp1252"):
        try:
            text = data.decode(candidate)
            break
        except UnicodeDecodeError:
            if candidate.startswith("utf-8") and (mixed := _mixed_lines(data)) is not None:
                _refuse_binary_text(mixed[0])
                return mixed[0], MIXED_ENCODING, [_mixed_note(mixed[1])]
            continue
    else:
        # Latin-1 maps every byte, so this always succeeds.
        candidate, text = "latin-1", data.decode("latin-1")
    _refuse_binary_text(text)
    return text, candidate, []


def _refuse_other_formats(data: bytes) -> None:
    """Name a spreadsheet, archive, compressed file or document uploaded as a table.

    Only signatures and a zip's directory are read: nothing is ever decompressed, so a
    compression bomb costs no more than its own size.
    """
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise TableReadError("binary", _zip_message(data))
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            unpack = (" Decompress it and upload the table inside. " + _NEVER_UNPACKED
                      if "compressed" in kind or "archive" in kind
                      else " Export the table as CSV and upload that.")
            raise TableReadError("binary", f"This is {kind}, not a text table.{unpack}")


def _zip_message(data: bytes) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()  # the directory only
    except (zipfile.BadZipFile, ValueError, OSError):
        names = []
    if any(name.startswith("xl/") for name in names):
        return ("This is an Excel workbook (.xlsx), not a text table. Open it in Excel or "
                "LibreOffice, save the sheet as CSV and upload that.")
    if "content.xml" in names and "mimetype" in names:
        return ("This is an OpenDocument spreadsheet (.ods), not a text table. Save the "
                "sheet as CSV and upload that.")
    inside = f" ({len(names)} file{'s' if len(names) != 1 else ''} inside)" if names else ""
    return (f"This is a zip archive{inside}, not a text table. Unzip it and upload the "
            f"table inside. {_NEVER_UNPACKED}")


# A multi-byte UTF-8 character: its presence next to bytes that are not UTF-8 means two
# encodings in one file (rows pasted from another export), which no single code page reads.
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                             rb"|[\xf0-\xf4][\x80-\xbf]{3}")


# The encoding a file mixing UTF-8 lines with Windows-1252 ones is read in (and re-read
# in from its stored read options): each line in whichever of the two it is valid in.
MIXED_ENCODING = "utf-8, else windows-1252, by line"


def _mixed_lines(data: bytes) -> tuple[str, list[int]] | None:
    """``data`` decoded line by line, UTF-8 where a line is valid UTF-8 and Windows-1252
    (Latin-1 for its five undefined bytes) elsewhere, with the numbers of the lines read
    the second way; None for a plain single-byte file (no UTF-8 text at all), which the
    code page fallback reads whole."""
    if not _UTF8_MULTIBYTE.search(data):
        return None
    parts, single_byte = [], []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            parts.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            single_byte.append(number)
            parts.append("".join(chr(b) if 0x80 <= b < 0xA0 and bytes([b]) in _CP1252_UNDEFINED
                                 else bytes([b]).decode("cp1252") for b in line))
    text = "\n".join(parts)
    return text.removeprefix("\ufeff"), single_byte


_CP1252_UNDEFINED = {b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d"}


def _mixed_note(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:5]) + (f" and {len(lines) - 5:,} more"
                                                    if len(lines) > 5 else "")
    return (f"The file mixes text encodings: it is UTF-8, but {len(lines):,} line"
            f"{'s' if len(lines) != 1 else ''} ({shown}) {'are' if len(lines) != 1 else 'is'} "
            "not, as if rows from a Windows export were pasted in; those lines were read as "
            "Windows-1252. Check their accented letters.")


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


_LEADING_ZERO = re.compile(r"0[0-9]+")


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


def _clean_name(value: object) -> str:
    return _INVISIBLE.sub("", str(value)).strip()


def _clean_names(values: list, notes: list[str]) -> list[str]:
    """Header cells as column names, without invisible characters (noted, with any name
    mixing alphabets, which is how look-alike names are made)."""
    names = []
    for position, value in enumerate(values, start=1):
        raw = str(value)
        name = _clean_name(raw)
        hidden = sorted({f"U+{ord(c):04X}" for c in _INVISIBLE.findall(raw)} - {"U+FEFF"})
        if hidden:
            notes.append(f"Column {position} ('{name}'): removed invisible characters "
                         f"({', '.join(hidden)}) from its name.")
        scripts = name_scripts(name)
        if len(scripts) > 1:
            notes.append(f"Column {position} ('{name}') mixes alphabets in its name "
                         f"({', '.join(scripts)}): check it is the column you mean.")
        names.append(name)
    return names


def name_scripts(name: str) -> list[str]:
    """The alphabets of the letters of ``name`` (LATIN, CYRILLIC, GREEK, ...), sorted."""
    scripts = set()
    for char in name:
        if char.isalpha():
            scripts.add(unicodedata.name(char, "UNKNOWN").split(" ")[0])
    return sorted(scripts)


# Letters of other alphabets drawn like Latin ones: enough to catch look-alike names.
_CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ӏ": "l", "ԛ": "q",
    "ԝ": "w", "ɡ": "g", "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ı": "i", "ℓ": "l",
})


def name_skeleton(name: str) -> str:
    """What a name looks like: NFKC, case-folded, other alphabets' look-alike letters
    replaced by Latin ones. Two different names with one skeleton are a spoof or a typo."""
    folded = unicodedata.normalize("NFKC", _INVISIBLE.sub("", name)).casefold()
    return folded.translate(_CONFUSABLES)


def name_words(name: str) -> set[str]:
    """Lower-case words of a column name: 'Product ID' and 'ProductId' -> {'product', 'id'}."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return {word for word in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if word}


def _refuse_duplicates(names: list[str]) -> None:
    duplicates = sorted(name for name, n in Counter(names).items() if n > 1 and name)
    if duplicates:
        raise TableReadError(
            "duplicate_columns",
            "Column names must be unique; repeated: " + "; ".join(
                f"'{d}' (columns {_positions(names, lambda n, d=d: n == d)})"
                for d in duplicates), column=duplicates[0],
        )
    skeletons = Counter(name_skeleton(name) for name in names if name)
    lookalikes = [key for key, n in skeletons.items() if n > 1]
    if lookalikes:
        groups = []
        for key in lookalikes:
            same = [n for n in names if n and name_skeleton(n) == key]
            spelled = " and ".join(f"'{n}' ({_spell(n)})" for n in same)
            where = _positions(names, lambda n, key=key: bool(n) and name_skeleton(n) == key)
            groups.append(f"{spelled}, columns {where}")
        first = next(n for n in names if n and name_skeleton(n) == lookalikes[0])
        raise TableReadError(
            "duplicate_columns",
            "Column names must be unique, and these only look different: " + "; ".join(groups)
            + ". Rename them so they differ in plain letters.", column=first,
        )


def _positions(names: list[str], matches) -> str:
    return " and ".join(str(k) for k, name in enumerate(names, start=1) if matches(name))


def _spell(name: str) -> str:
    """The letters of ``name`` outside plain ASCII, named (for look-alike reports)."""
    odd = [f"'{c}' {unicodedata.name(c, hex(ord(c)))}" for c in dict.fromkeys(name)
           if ord(c) > 127]
    return "with " + ", ".join(odd) if odd else "plain letters"


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
        if not (_is_number(first) or _LOCAL_NUMBER.fullmatch(first) or _date_like(first)):
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
    if _is_number(first):
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
            if _is_number(cell):
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
