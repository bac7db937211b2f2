"""Where uploaded bytes live: once per organisation and content hash, outside the web root,
encrypted at rest.

Every stored file is written by :func:`store_upload` and read back by :func:`read_stored`
(training, profiling, scoring, companions, drift: nothing opens a stored file itself), so
plaintext never reaches the disk. The format is chunked so an upload is encrypted while it
streams in::

    MAGIC, then frames: 4-byte big-endian length, Fernet token of
                        (8-byte chunk index, 1-byte last-chunk flag, up to 1 MiB of data)

The index and the flag inside each authenticated token make a reordered, truncated or
spliced file fail to decrypt instead of reading as a different table. Keys come from
``TESSERA_FERNET_KEYS`` (comma-separated, the first encrypts, all decrypt:
:class:`cryptography.fernet.MultiFernet`); ``manage.py rotate_keys`` re-encrypts every
stored file with the first. Without keys (the demo, tests) one is derived from
``SECRET_KEY`` with a warning; production settings refuse to run without them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
MAGIC = b"TESSERA-FERNET-1\n"
_LENGTH = struct.Struct(">I")
_CHUNK_HEADER = struct.Struct(">QB")  # chunk index, 1 on the last chunk
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")
TEMP_PREFIX = ".upload-"
KEYS_SETTING = "TESSERA_FERNET_KEYS"


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the limit of {_human(limit)}")
        self.limit = limit


class StoredFileError(Exception):
    """A stored file that cannot be read back: undecryptable, truncated or altered."""


@dataclass(frozen=True)
class StoredUpload:
    relative_path: str  # relative to TESSERA_UPLOAD_DIR
    sha256: str  # of the plaintext
    size_bytes: int  # of the plaintext


def upload_root() -> Path:
    return Path(settings.TESSERA_UPLOAD_DIR)


# --- keys -------------------------------------------------------------------------------


def configured_keys() -> tuple[str, ...]:
    """The keys from ``TESSERA_FERNET_KEYS`` (a list or one comma-separated string)."""
    raw = getattr(settings, KEYS_SETTING, None) or ()
    if isinstance(raw, str):
        raw = raw.split(",")
    return tuple(key.strip() for key in raw if key and key.strip())


def derived_key(secret: str) -> str:
    """A Fernet key derived from ``secret`` (the demo's and the tests' default)."""
    digest = hashlib.sha256(b"tessera uploads at rest\x00" + secret.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def fernet() -> MultiFernet:
    """The configured keys as one MultiFernet: the first encrypts, every one decrypts.

    ImproperlyConfigured when a key is malformed, or when none is set and the settings
    require them (production).
    """
    keys = configured_keys()
    if not keys:
        if getattr(settings, "TESSERA_REQUIRE_FERNET_KEYS", False):
            raise ImproperlyConfigured(
                f"{KEYS_SETTING} is not set: uploaded files are encrypted at rest and "
                "production needs its own key. Generate one with `manage.py rotate_keys "
                f"--generate-key` and set {KEYS_SETTING}=<key> in the environment."
            )
        return _derived_fernet(settings.SECRET_KEY)
    return _fernet(keys)


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    parsed = []
    for position, key in enumerate(keys, start=1):
        try:
            parsed.append(Fernet(key))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"{KEYS_SETTING}: key {position} is not a Fernet key (32 bytes, url-safe "
                "base64); generate one with `manage.py rotate_keys --generate-key`."
            ) from None
    return MultiFernet(parsed)


@functools.lru_cache(maxsize=4)
def _derived_fernet(secret: str) -> MultiFernet:
    logger.warning(
        "%s is not set: uploaded files are encrypted with a key derived from SECRET_KEY. "
        "Fine for the demo and tests; set %s (see docs/operations.md) anywhere else.",
        KEYS_SETTING, KEYS_SETTING,
    )
    return MultiFernet([Fernet(derived_key(secret))])


def key_problem() -> str | None:
    """Why the key settings cannot work, for the system check; None when they can."""
    try:
        fernet()
    except ImproperlyConfigured as exc:
        return str(exc)
    return None


# --- the format -------------------------------------------------------------------------


def encrypt_chunks(chunks: Iterable[bytes], crypto: MultiFernet | None = None) -> Iterator[bytes]:
    """The stored form of the plaintext ``chunks``: MAGIC, then one frame per chunk."""
    crypto = crypto or fernet()
    yield MAGIC
    index, previous = 0, None
    for chunk in chunks:
        if not chunk:
            continue
        if previous is not None:
            yield _frame(crypto, index, previous, last=False)
            index += 1
        previous = chunk
    yield _frame(crypto, index, previous or b"", last=True)


def _frame(crypto: MultiFernet, index: int, data: bytes, *, last: bool) -> bytes:
    token = crypto.encrypt(_CHUNK_HEADER.pack(index, 1 if last else 0) + data)
    return _LENGTH.pack(len(token)) + token


def is_encrypted(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def decrypt(blob: bytes, *, name: str = "the file") -> bytes:
    """The plaintext of a stored file's bytes. StoredFileError when the keys cannot decrypt
    it or it was cut or altered."""
    crypto = fernet()
    parts, position, expected = [], len(MAGIC), 0
    while position < len(blob):
        if position + _LENGTH.size > len(blob):
            raise StoredFileError(f"{name} is truncated (a frame header is cut off)")
        (length,) = _LENGTH.unpack_from(blob, position)
        position += _LENGTH.size
        token = blob[position:position + length]
        position += length
        if len(token) != length:
            raise StoredFileError(f"{name} is truncated (its last frame is cut off)")
        try:
            plain = crypto.decrypt(token)
        except InvalidToken:
            raise StoredFileError(
                f"{name} cannot be decrypted with the configured keys ({KEYS_SETTING}): "
                "was the key that encrypted it removed? Keep old keys after the first "
                "until `manage.py rotate_keys` has re-encrypted every file."
            ) from None
        index, last = _CHUNK_HEADER.unpack_from(plain)
        if index != expected:
            raise StoredFileError(f"{name} was altered: its chunks are out of order")
        parts.append(plain[_CHUNK_HEADER.size:])
        expected += 1
        if last:
            if position != len(blob):
                raise StoredFileError(f"{name} was altered: data follows its last chunk")
            return b"".join(parts)
    raise StoredFileError(f"{name} is truncated: its last chunk is missing")


# --- storing and reading ----------------------------------------------------------------


def _chunks(file) -> Iterator[bytes]:
    """The file's bytes in pieces of at most 1 MiB (an in-memory upload gives them whole)."""
    if hasattr(file, "chunks"):
        pieces = file.chunks(_CHUNK)
    else:
        pieces = iter(lambda: file.read(_CHUNK), b"")
    for piece in pieces:
        if not piece:
            break
        piece = piece.encode("utf-8") if isinstance(piece, str) else piece
        for start in range(0, len(piece), _CHUNK):
            yield piece[start:start + _CHUNK]


def store_upload(file, *, organisation_id: int, max_bytes: int) -> StoredUpload:
    """Stream ``file`` to disk, encrypted, while hashing its plaintext; refuse it (storing
    nothing) past ``max_bytes``.

    The bytes land in a temporary file in the organisation's folder, then are renamed to
    the plaintext's sha256, so the same content is stored once and a half-written file is
    never seen.
    """
    folder = upload_root() / str(organisation_id)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0

    def measured() -> Iterator[bytes]:
        nonlocal size
        for chunk in _chunks(file):
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge(max_bytes)
            digest.update(chunk)
            yield chunk

    # Kept for read_stored, which is called right after (when it fits the cache).
    plain_chunks: list[bytes] | None = []

    def kept() -> Iterator[bytes]:
        nonlocal plain_chunks
        for chunk in measured():
            if size > _REMEMBER_BYTES:
                plain_chunks = None
            if plain_chunks is not None:
                plain_chunks.append(chunk)
            yield chunk

    stored_pieces: list[bytes] = []  # the ciphertext written, kept with the plaintext
    handle, temp_name = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(handle, "wb") as out:
            for piece in encrypt_chunks(kept()):
                if plain_chunks is None:
                    stored_pieces.clear()  # too large to remember
                else:
                    stored_pieces.append(piece)
                out.write(piece)
        sha256 = digest.hexdigest()
        # Content stored before is replaced by the same plaintext under the current key (an
        # atomic rename: a reader sees the old file or the new one, both whole), so the
        # ciphertext on disk is always the one just written and need not be decrypted again.
        os.replace(temp_name, folder / sha256)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    relative_path = f"{organisation_id}/{sha256}"
    if plain_chunks is not None:
        _remember(relative_path, stored_pieces, b"".join(plain_chunks))
    else:
        forget_plaintext()
    return StoredUpload(relative_path=relative_path, sha256=sha256, size_bytes=size)


def stored_file(relative_path: str) -> Path:
    """The absolute path of a stored upload; refuses paths that escape the upload folder.

    The file holds ciphertext: read its content with :func:`read_stored`.
    """
    root = upload_root().resolve()
    path = (root / relative_path).resolve()
    if root not in path.parents:
        raise ValueError(f"stored path {relative_path!r} is outside the upload folder")
    return path


def read_stored(relative_path: str) -> bytes:
    """The plaintext of a stored upload: the one way every reader gets at its bytes.

    A content-addressed file (named by its sha256) is checked against its name. Files
    stored before encryption existed are read as they are (``rotate_keys`` encrypts them).
    FileNotFoundError when it is missing; StoredFileError when it cannot be decrypted or
    was altered.
    """
    path = stored_file(relative_path)
    name = f"stored file {relative_path}"
    plain = _remembered(relative_path, path)
    if plain is not None:
        return plain  # the file holds the very bytes that were decrypted and checked
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} is missing from the upload folder") from None
    if is_encrypted(blob):
        plain = decrypt(blob, name=name)
    else:
        logger.warning("%s is not encrypted; run `manage.py rotate_keys`", name)
        plain = blob
    if _SHA256_NAME.fullmatch(path.name) and hashlib.sha256(plain).hexdigest() != path.name:
        raise StoredFileError(f"{name} was altered: its content no longer matches its sha256")
    if is_encrypted(blob):
        _remember(relative_path, [blob], plain)
    return plain


# The plaintext of the last file stored or read in this process: an upload is read right
# after it is stored and again when its mapping is confirmed. Kept with the ciphertext it
# came from and the keys in use, and answered only when the file holds that very
# ciphertext (compared in full as it is read, a frame at a time: no digest to compute, no
# decryption, no sha256 check, not even the whole file in memory), so an altered,
# re-encrypted or no longer decryptable file is never answered from here; one entry, and
# only files up to _REMEMBER_BYTES, bound the memory (the plaintext and its ciphertext,
# about 1.35 times as large).
_REMEMBER_BYTES = 512 * 2**20
_LAST_PLAIN: dict = {}
_LAST_PLAIN_LOCK = threading.Lock()


def _keys_in_use() -> tuple:
    return configured_keys(), settings.SECRET_KEY


def _remember(relative_path: str, ciphertext: list[bytes], plain: bytes) -> None:
    """Remember ``plain`` as the content of ``relative_path`` while the file holds the
    concatenation of ``ciphertext``."""
    with _LAST_PLAIN_LOCK:
        _LAST_PLAIN.clear()
        if len(plain) <= _REMEMBER_BYTES:
            _LAST_PLAIN.update(key=(relative_path, _keys_in_use()), ciphertext=ciphertext,
                               size=sum(map(len, ciphertext)), plain=plain)


def forget_plaintext() -> None:
    """Drop the remembered plaintext (at the end of each request and task)."""
    with _LAST_PLAIN_LOCK:
        _LAST_PLAIN.clear()



def _remembered(relative_path: str, path: Path) -> bytes | None:
    """The remembered plaintext of ``relative_path`` when the file at ``path`` holds the
    ciphertext it was remembered with; None otherwise (or when it cannot be read)."""
    with _LAST_PLAIN_LOCK:
        entry = dict(_LAST_PLAIN)
    if entry.get("key") != (relative_path, _keys_in_use()):
        return None
    try:
        with open(path, "rb", buffering=0) as handle:
            if os.fstat(handle.fileno()).st_size != entry["size"]:
                return None
            for piece in entry["ciphertext"]:
                if handle.read(len(piece)) != piece:
                    return None
    except OSError:
        return None
    return entry["plain"]


def stored_paths() -> Iterator[Path]:
    """Every stored file under the upload folder (not half-written temporary files)."""
    root = upload_root()
    if not root.exists():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith(TEMP_PREFIX):
            yield path


def reencrypt(path: Path) -> str:
    """Rewrite one stored file with the current (first) key: "rotated", or "encrypted"
    for a file stored before encryption existed. StoredFileError when no key opens it."""
    blob = path.read_bytes()
    was_encrypted = is_encrypted(blob)
    plain = decrypt(blob, name=str(path)) if was_encrypted else blob
    write_encrypted(path, plain)
    return "rotated" if was_encrypted else "encrypted"


# --- outputs: files the platform writes from personal data ------------------------------
# Each run's predictions.csv (row ids, labels, sensitive groups) and each batch-scoring
# result (every input column) are encrypted like uploads, with the same keys and rotation,
# and decrypted only for an authorised reader (the download views check the organisation).

OUTPUT_PATTERNS = ("run_*/predictions.csv", "run_*/pictures/*.png", "scoring/job_*.csv",
                   "contact_sheets/version_*/*.png")


def artifact_root() -> Path:
    return Path(settings.TESSERA_ARTIFACT_DIR)


def write_encrypted(path: Path, data: bytes) -> None:
    """Write ``data`` encrypted to ``path``, atomically and readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(handle, "wb") as out:  # mkstemp makes it 0600
            for piece in encrypt_chunks(data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK)):
                out.write(piece)
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise


def read_encrypted(path: Path) -> bytes:
    """The plaintext of an output written by :func:`write_encrypted`. One written before
    outputs were encrypted is read as it is (``rotate_keys`` encrypts it)."""
    blob = Path(path).read_bytes()
    if is_encrypted(blob):
        return decrypt(blob, name=f"output {Path(path).name}")
    logger.warning("output %s is not encrypted; run `manage.py rotate_keys`", path)
    return blob


def decrypted_png_response(png: bytes):
    """An authorised view's answer with a picture decrypted for it (a thumbnail, a
    saliency overlay: they show data): never cached, never sniffed as another type."""
    from django.http import HttpResponse

    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def output_paths() -> Iterator[Path]:
    """Every encrypted-at-rest output under the artifact folder."""
    root = artifact_root()
    if not root.exists():
        return
    for pattern in OUTPUT_PATTERNS:
        yield from sorted(p for p in root.glob(pattern) if p.is_file())


def _human(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
