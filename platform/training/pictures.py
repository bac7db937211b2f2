"""Pictures in a run's result: thumbnails of test images, saliency overlays.

A family hands them over as PNG data URLs inside its chart data (``result.charts``). They
show the data (images of parts, of people's scans), so they are neither kept in the
database nor sent in the API's result: before the result is stored, each one is written to
the run's artifact folder, encrypted at rest like the predictions (:mod:`ingestion.storage`),
and its place in the charts holds ``{"picture": name}``. The run page shows them through
one view that serves a picture only to the run's organisation, never cached.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from pathlib import Path

from ingestion.storage import read_encrypted, write_encrypted

PICTURES_DIR = "pictures"
DATA_URL = "data:image/png;base64,"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What a stored name looks like: made here from the chart keys and positions, nothing else.
NAME = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+)*\.png")
PICTURE_KEY = "picture"


def picture_path(artifact_dir: Path | str, name: str) -> Path:
    if not NAME.fullmatch(name):
        raise ValueError(f"not a picture name: {name!r}")
    return Path(artifact_dir) / PICTURES_DIR / name


def _slug(part) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", str(part).lower()).strip("_") or "x"


def store_pictures(charts, artifact_dir: Path | str):
    """``charts`` with every PNG data URL written to the artifact folder (encrypted) and
    replaced by ``{"picture": name}``; a data URL that is not a PNG is dropped (None)."""

    def walk(value, path: tuple):
        if isinstance(value, dict):
            return {key: walk(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*path, index)) for index, item in enumerate(value)]
        if isinstance(value, str) and value.startswith(DATA_URL):
            try:
                png = base64.b64decode(value[len(DATA_URL):], validate=True)
            except (binascii.Error, ValueError):
                return None
            if not png.startswith(PNG_MAGIC):
                return None
            name = "-".join(_slug(part) for part in path) + ".png"
            write_encrypted(picture_path(artifact_dir, name), png)
            return {PICTURE_KEY: name}
        return value

    return walk(charts, ())


def picture_names(charts) -> Iterator[str]:
    """Every picture a stored result's charts refer to."""
    if isinstance(charts, dict):
        if set(charts) == {PICTURE_KEY} and isinstance(charts[PICTURE_KEY], str):
            yield charts[PICTURE_KEY]
            return
        for value in charts.values():
            yield from picture_names(value)
    elif isinstance(charts, list):
        for value in charts:
            yield from picture_names(value)


def read_picture(run, name: str) -> bytes:
    """The decrypted PNG ``name`` of ``run``; FileNotFoundError unless the run's stored
    result refers to it (no other file of the artifact folder is reachable by name)."""
    charts = (run.result or {}).get("charts") or {}
    if not run.artifact_path or name not in set(picture_names(charts)):
        raise FileNotFoundError(name)
    return read_encrypted(picture_path(run.artifact_path, name))
