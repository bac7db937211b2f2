"""Decoding an upload's bytes: UTF-8 with or without a BOM, UTF-16, a Windows code page, or
UTF-8 with Windows-1252 lines pasted in (read line by line, noted); binary data refused."""

from __future__ import annotations

import re

from ml_core.tables.compressed import _refuse_other_formats
from ml_core.tables.errors import TableReadError

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")


def _blank(text: str | bytes) -> bool:
    """Whether ``text`` holds nothing but white space (``not text.strip()``, without copying
    a large text)."""
    return not text or text.isspace()


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
