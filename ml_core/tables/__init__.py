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

The modules, by concern: :mod:`~ml_core.tables.reading` (:func:`read_table`),
:mod:`~ml_core.tables.sniffing` (separator, row shape, header),
:mod:`~ml_core.tables.encodings`, :mod:`~ml_core.tables.compressed` (gzip, and the formats
refused), :mod:`~ml_core.tables.cells` (cell normalisation), :mod:`~ml_core.tables.names`
(column names) and :mod:`~ml_core.tables.columns` (column utilities shared with the checks
and the profile). Their public names are imported from here.
"""

from ml_core.tables.cells import HEADER_SAMPLE_ROWS, MAX_CELL_CHARS, MISSING_MARKERS, is_number
from ml_core.tables.columns import (
    ColumnCodes,
    distinct_mean,
    distinct_means,
    factorize,
    first_present,
)
from ml_core.tables.compressed import (
    MAX_COMPRESSION_RATIO,
    MAX_UNCOMPRESSED_BYTES,
    gunzip_table,
)
from ml_core.tables.encodings import MIXED_ENCODING
from ml_core.tables.errors import TableReadError
from ml_core.tables.names import name_scripts, name_skeleton, name_words
from ml_core.tables.reading import TableReadOptions, read_table
from ml_core.tables.sniffing import (
    DELIMITERS,
    MAX_COLUMNS,
    MAX_LISTED,
    SEP_ALIASES,
    SNIFF_LINES,
    WHITESPACE,
)

__all__ = [
    "DELIMITERS",
    "HEADER_SAMPLE_ROWS",
    "MAX_CELL_CHARS",
    "MAX_COLUMNS",
    "MAX_COMPRESSION_RATIO",
    "MAX_LISTED",
    "MAX_UNCOMPRESSED_BYTES",
    "MISSING_MARKERS",
    "MIXED_ENCODING",
    "SEP_ALIASES",
    "SNIFF_LINES",
    "WHITESPACE",
    "ColumnCodes",
    "TableReadError",
    "TableReadOptions",
    "distinct_mean",
    "distinct_means",
    "factorize",
    "first_present",
    "gunzip_table",
    "is_number",
    "name_scripts",
    "name_skeleton",
    "name_words",
    "read_table",
]
