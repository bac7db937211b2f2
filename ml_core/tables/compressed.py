"""Files that are not text tables: spreadsheets, archives, documents and compressed files
are named from their signature (and never unpacked); a gzip-compressed table, the one
compressed form read, is decompressed in bounded chunks (a gzip bomb costs no more than the
caller's byte limit or :data:`MAX_COMPRESSION_RATIO` times its size)."""

from __future__ import annotations

import io
import zipfile
import zlib

from ml_core.tables.errors import TableReadError

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
