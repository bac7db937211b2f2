"""Where uploaded bytes live: once per organisation and content hash, outside the web root."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

_CHUNK = 1024 * 1024


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the limit of {_human(limit)}")
        self.limit = limit


@dataclass(frozen=True)
class StoredUpload:
    relative_path: str  # relative to TESSERA_UPLOAD_DIR
    sha256: str
    size_bytes: int


def upload_root() -> Path:
    return Path(settings.TESSERA_UPLOAD_DIR)


def _chunks(file):
    if hasattr(file, "chunks"):
        yield from file.chunks(_CHUNK)
        return
    while True:
        chunk = file.read(_CHUNK)
        if not chunk:
            return
        yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk


def store_upload(file, *, organisation_id: int, max_bytes: int) -> StoredUpload:
    """Stream ``file`` to disk while hashing it; refuse it (storing nothing) past ``max_bytes``.

    The bytes land in a temporary file in the organisation's folder, then are renamed to
    their sha256, so the same content is stored once and a half-written file is never seen.
    """
    folder = upload_root() / str(organisation_id)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle, temp_name = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in _chunks(file):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(max_bytes)
                digest.update(chunk)
                out.write(chunk)
        sha256 = digest.hexdigest()
        final = folder / sha256
        if final.exists():
            os.unlink(temp_name)
        else:
            os.replace(temp_name, final)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return StoredUpload(relative_path=f"{organisation_id}/{sha256}", sha256=sha256, size_bytes=size)


def stored_file(relative_path: str) -> Path:
    """The absolute path of a stored upload; refuses paths that escape the upload folder."""
    root = upload_root().resolve()
    path = (root / relative_path).resolve()
    if root not in path.parents:
        raise ValueError(f"stored path {relative_path!r} is outside the upload folder")
    return path


def _human(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
