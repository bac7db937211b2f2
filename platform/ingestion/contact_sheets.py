"""What a dataset page shows of an uploaded ZIP of images: the archive's profile (counts per
class and group, sizes and modes, duplicates, what was skipped and why) and a contact sheet,
a few thumbnails per class.

The thumbnails show the data, so they are made once, from the stored (encrypted) ZIP, by the
family that reads it (its ``thumbnail`` hook), and kept encrypted at rest under the artifact
folder (:func:`ingestion.storage.write_encrypted`) beside an encrypted index; a view serves
them to the version's organisation only, never cached.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from catalog.families import family_of
from ingestion import image_uploads
from ingestion.storage import artifact_root, read_encrypted, read_stored, write_encrypted

logger = logging.getLogger(__name__)

SAMPLES_PER_CLASS = 4
THUMBNAIL = 96
INDEX = "index.json"
NAME = re.compile(r"\d+-\d+\.png")
LISTED = 10


def sheet_dir(version) -> Path:
    return artifact_root() / "contact_sheets" / f"version_{version.pk}"


def _spec(version):
    from verticals.registry import RegistryError, get_problem

    try:
        return get_problem(version.dataset.vertical, version.dataset.problem).spec
    except RegistryError:
        return None


def _label_column(version) -> str | None:
    mapping = version.mapping or version.suggested_mapping or {}
    return mapping.get("target") or None


def contact_sheet(version) -> list[dict]:
    """``[{"label", "images": [{"name", "file"}]}]``, one entry per class (classes by the
    confirmed or suggested target); made on the first call. Empty for a version that is no
    image archive, or whose archive cannot be read."""
    if not image_uploads.is_archive_options(version.read_options):
        return []
    index = sheet_dir(version) / INDEX
    if index.is_file():
        return json.loads(read_encrypted(index))
    spec = _spec(version)
    thumbnail = getattr(family_of(spec), "thumbnail", None) if spec is not None else None
    if thumbnail is None or not version.stored_path:
        return []
    try:
        samples = image_uploads.samples_by_class(
            read_stored(version.stored_path), spec, label=_label_column(version),
            per_class=SAMPLES_PER_CLASS)
    except image_uploads.ArchiveRefused:
        return []
    sheet = []
    for k, (label, images) in enumerate(samples):
        shown = []
        for j, (path, blob) in enumerate(images):
            png = thumbnail(blob, size=THUMBNAIL)
            if png is None:
                continue
            name = f"{k}-{j}.png"
            write_encrypted(sheet_dir(version) / name, png)
            shown.append({"name": name, "file": path})
        sheet.append({"label": label, "images": shown})
    write_encrypted(index, json.dumps(sheet).encode("utf-8"))
    return sheet


def sample_png(version, name: str) -> bytes:
    """One thumbnail of ``version``'s contact sheet; FileNotFoundError for any other name."""
    if not NAME.fullmatch(name):
        raise FileNotFoundError(name)
    names = {image["name"] for entry in contact_sheet(version) for image in entry["images"]}
    if name not in names:
        raise FileNotFoundError(name)
    return read_encrypted(sheet_dir(version) / name)


def image_profile(version) -> dict | None:
    """The archive's profile as the page lists it; None for a version that is no image
    archive. Every figure is the one the reader recorded at upload."""
    options = version.read_options or {}
    if not image_uploads.is_archive_options(options) or "archive" not in options:
        return None
    archive = options["archive"]
    skipped = [{"file": name, "reason": "not an image file"}
               for name in archive.get("skipped_names") or []]
    skipped += [{"file": item["file"], "reason": item["reason"]}
                for item in archive.get("unreadable") or []]
    skipped += [{"file": name, "reason": "named in the labels CSV, not in the ZIP"}
                for name in archive.get("missing_files") or []]
    images = int(archive.get("images") or 0)
    return {
        "images": images,
        "layout": archive.get("layout"),
        "classes": sorted((archive.get("classes") or {}).items(), key=lambda kv: (-kv[1], kv[0])),
        "groups": {column: sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                   for column, counts in (archive.get("groups") or {}).items()},
        "sizes": archive.get("sizes") or {},
        "modes": sorted((archive.get("modes") or {}).items(), key=lambda kv: (-kv[1], kv[0])),
        "duplicates": archive.get("duplicates") or {},
        "skipped": skipped[:3 * LISTED],
        "skipped_counts": {"not_images": int(archive.get("skipped_non_image") or 0),
                           "unreadable": len(archive.get("unreadable") or []),
                           "unlabelled": int(archive.get("unlabelled") or 0),
                           "missing_files": len(archive.get("missing_files") or [])},
        "contact_sheet": contact_sheet(version),
    }
