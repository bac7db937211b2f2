"""Image uploads: a ZIP of class folders, or of images with a CSV of labels.

A problem whose model family reads archives (its ``read_archive`` method; the platform
asks the family, never compares its name) takes a ZIP instead of a table. The ZIP is stored
like every upload (:mod:`ingestion.storage`: encrypted at rest, hashed) and read by the
family into a table: the image paths, labels, group columns, and the bytes in an internal
column no person maps. What reading skipped or could not decode becomes warnings;
archives refused as a whole (path traversal, links, ZIP bombs) become errors.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

import pandas as pd

from ml_core.spec import ProblemSpec

ARCHIVE_FORMAT = "image_zip"
LABELS_MEMBER = "labels.csv"
LISTED = 5


class ArchiveRefused(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _reader(spec: ProblemSpec):
    """The family's archive reader, for a family that takes uploads as archives."""
    from catalog.families import family_of

    return getattr(family_of(spec), "read_archive", None)


def reads_archives(spec: ProblemSpec) -> bool:
    """True when ``spec``'s family takes an uploaded ZIP of images."""
    return _reader(spec) is not None


def is_archive_options(read_options: dict | None) -> bool:
    return (read_options or {}).get("format") == ARCHIVE_FORMAT


def read_archive(data: bytes, spec: ProblemSpec) -> tuple[pd.DataFrame, dict]:
    """(table, read options with the archive's profile) of a stored ZIP. ArchiveRefused
    when the family refuses the archive as a whole."""
    from ml_core.families.image.archive import ArchiveError

    try:
        archive = _reader(spec)(data)
    except ArchiveError as exc:
        raise ArchiveRefused(exc.code, exc.message) from None
    return archive.frame, {"format": ARCHIVE_FORMAT, "archive": archive.profile(),
                           "notes": notes(archive.profile())}


def read_images_to_score(data: bytes, spec: ProblemSpec) -> pd.DataFrame:
    """The images of a ZIP sent to an approved model, unlabelled (each under its path in
    the ZIP), through the same safe reader as uploads. ArchiveRefused for a hostile or empty
    archive, or when no image in it can be read (the reasons named)."""
    from ml_core.families.image.archive import ArchiveError

    try:
        archive = _reader(spec)(data, labelled=False)
    except ArchiveError as exc:
        raise ArchiveRefused(exc.code, exc.message) from None
    if archive.frame.empty:
        shown = "; ".join(f"{name}: {reason}" for name, reason in archive.unreadable[:LISTED])
        raise ArchiveRefused("unreadable_images", f"No image could be read ({shown}).")
    return archive.frame


def samples_by_class(data: bytes, spec: ProblemSpec, *, label: str | None, per_class: int
                     ) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """The first ``per_class`` images (by path) of each class of a stored ZIP: (class,
    [(path, bytes)]), classes sorted. ``label`` names the label column (the mapping's
    target); without one in the table, every image is one class, "all images"."""
    from ml_core.families.image.archive import ArchiveError
    from ml_core.families.image.columns import IMAGE_BYTES_COLUMN

    try:
        archive = _reader(spec)(data)
    except ArchiveError as exc:
        raise ArchiveRefused(exc.code, exc.message) from None
    frame = archive.frame.sort_values(archive.path_column, kind="stable")
    label = label if label in frame.columns else archive.label_column
    keys = frame[label].astype(str) if label else pd.Series("all images", index=frame.index)
    return [(str(value), [(str(row[archive.path_column]), bytes(row[IMAGE_BYTES_COLUMN]))
                          for _, row in group.head(per_class).iterrows()])
            for value, group in frame.groupby(keys, sort=True)]


def single_image_archive(name: str, data: bytes) -> bytes:
    """One uploaded image as a ZIP of one member, so that a single image is read by the same
    safe reader (and decoder) as an archive. The member keeps the file's base name."""
    base = PurePosixPath(str(name).replace("\\", "/")).name.lstrip(".") or "image"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(base, data)
    return buffer.getvalue()


def with_internal_excluded(mapping, suggested: dict | None):
    """``mapping`` with the archive's internal columns (the image bytes) excluded as the
    suggested mapping excluded them: the mapping page and API clients list only the visible
    columns, and the table checks must not read bytes as text."""
    from dataclasses import replace

    from ingestion.companions import INTERNAL_PREFIX

    internal = [column for column in (suggested or {}).get("exclude") or ()
                if str(column).startswith(INTERNAL_PREFIX) and column not in mapping.exclude
                and column not in {column for _, column in mapping.roles}]
    return replace(mapping, exclude=(*mapping.exclude, *internal)) if internal else mapping


def notes(profile: dict) -> list[str]:
    """Plain-language warnings about what reading the ZIP skipped or could not read."""
    found = []
    if profile.get("skipped_non_image"):
        names = ", ".join(profile["skipped_names"][:LISTED])
        found.append(f"{profile['skipped_non_image']} files in the ZIP are not images and were "
                     f"skipped (e.g. {names}).")
    unreadable = profile.get("unreadable") or []
    if unreadable:
        shown = "; ".join(f"{item['file']}: {item['reason']}" for item in unreadable[:LISTED])
        found.append(f"{len(unreadable)} images could not be read and were left out ({shown}).")
    if profile.get("unlabelled"):
        found.append(f"{profile['unlabelled']} images are not named in the labels CSV and "
                     "were left out.")
    if profile.get("missing_files"):
        found.append(f"{len(profile['missing_files'])} rows of the labels CSV name no image "
                     f"in the ZIP (e.g. {', '.join(profile['missing_files'][:LISTED])}).")
    return found


def with_labels(archive: bytes, labels: bytes) -> bytes:
    """The ZIP with ``labels`` added as ``labels.csv`` (a CSV given beside the ZIP travels
    inside it, so the one stored, encrypted upload holds everything a run reads)."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    buffer = io.BytesIO()
    with source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename.lower().endswith(".csv"):
                continue  # the given CSV replaces any inside
            target.writestr(info, source.read(info.filename))
        target.writestr(LABELS_MEMBER, labels)
    return buffer.getvalue()
