"""Reading an uploaded ZIP of images into the table the image family trains on, safely.

Two layouts:

* **one folder per class**: ``crazing/img1.jpg``, ``ok/img2.png`` (under one common top
  folder or none); the label is the class folder's name;
* **images plus a CSV** naming each image's file and label, with any grouping columns
  (line, camera, shift). The CSV is given beside the ZIP or inside it (the only CSV there);
  file names match the member's path, or its base name when that is unique.

Refused outright (:class:`ArchiveError`), since a hostile archive must not be half-read:
member names with ``..``, absolute paths or drive letters (path traversal); symbolic links;
ZIP bombs (a member whose size exceeds its declared size, a compression ratio above
:data:`MAX_RATIO`, or more than :data:`MAX_TOTAL_BYTES` uncompressed in all); more than
:data:`MAX_MEMBERS` members; encrypted members. Nothing is written to disk: members are read
into memory with a bound on every read.

Skipped with a count: directories, files that are not images by their extension (text,
``.DS_Store``, ``__MACOSX/`` resource forks). Images that cannot be decoded (corrupt,
truncated, decompression bombs) are left out and listed with the reason. The result
(:class:`ImageArchive`) carries the table and a profile: counts per class and group, sizes,
modes, what was skipped.
"""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd

from ml_core.families.image.columns import IMAGE_BYTES_COLUMN
from ml_core.families.image.decoding import ImageDecodeError, open_image
from ml_core.tables import MAX_COMPRESSION_RATIO

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
MAX_MEMBERS = 200_000
MAX_TOTAL_BYTES = 4 * 2**30
MAX_MEMBER_BYTES = 256 * 2**20
# Photographs compress 1-10x, flat PNGs up to ~100x; a ZIP bomb compresses 1000x and more.
# The same limit as a gzip-compressed table's (ml_core.tables).
MAX_RATIO = MAX_COMPRESSION_RATIO
PATH_COLUMN = "file"
LABEL_COLUMN = "label"
LISTED = 20


class ArchiveError(ValueError):
    """An archive refused as a whole; ``code`` names the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ImageArchive:
    """The table (``file``, ``label``, group columns, image bytes) and what reading found."""

    frame: pd.DataFrame
    layout: str  # "folders" or "csv"
    path_column: str  # the member path of each image (the CSV's own column name, or "file")
    label_column: str | None  # None: a CSV whose label column is chosen when mapping
    skipped_non_image: int
    skipped_names: tuple[str, ...]  # the first few
    unreadable: tuple[tuple[str, str], ...]  # (member, reason)
    unlabelled: int = 0  # images the CSV does not name
    missing_files: tuple[str, ...] = ()  # CSV rows naming no member
    sizes: dict = field(default_factory=dict)  # min/max width and height
    modes: dict = field(default_factory=dict)  # Pillow mode -> count (as uploaded)

    def profile(self) -> dict:
        """JSON-ready counts for the upload's profile page."""
        frame = self.frame
        groups = {column: frame[column].astype(str).value_counts().to_dict()
                  for column in frame.columns
                  if column not in (self.path_column, self.label_column, IMAGE_BYTES_COLUMN)}
        return {
            "layout": self.layout, "images": int(len(frame)),
            "classes": frame[self.label_column].astype(str).value_counts().to_dict()
            if self.label_column else {},
            "groups": groups, "sizes": self.sizes, "modes": self.modes,
            "skipped_non_image": self.skipped_non_image,
            "skipped_names": list(self.skipped_names),
            "unreadable": [{"file": name, "reason": reason} for name, reason in self.unreadable],
            "unlabelled": self.unlabelled, "missing_files": list(self.missing_files),
            "duplicates": self.duplicates(),
        }

    def duplicates(self) -> dict:
        """Byte-identical images: ``copies`` (images that repeat an earlier one),
        ``conflicting`` (images whose copies carry another label: the same picture under two
        classes) and a few ``examples`` (the paths of one set of copies each)."""
        frame = self.frame
        digests = pd.Series([hashlib.sha256(bytes(b)).hexdigest()
                             for b in frame[IMAGE_BYTES_COLUMN]], index=frame.index)
        repeated = digests[digests.duplicated(keep=False)]
        conflicting = 0
        if self.label_column and len(repeated):
            labels = frame.loc[repeated.index, self.label_column].astype(str)
            per_digest = labels.groupby(repeated).nunique()
            conflicting = int(repeated.isin(per_digest[per_digest > 1].index).sum())
        examples = [frame.loc[group.index, self.path_column].astype(str).tolist()
                    for _, group in list(repeated.groupby(repeated, sort=False))[:LISTED // 4]]
        return {"copies": int(digests.duplicated().sum()), "conflicting": conflicting,
                "examples": examples}


def _check_name(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if (name.startswith(("/", "\\")) or ".." in path.parts
            or (len(name) > 1 and name[1] == ":")):
        raise ArchiveError("path_traversal", f"The ZIP member '{name}' points outside the "
                                             "archive (absolute path or '..'); refused.")


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError("too_many_files", f"The ZIP holds {len(infos):,} entries; at most "
                                             f"{MAX_MEMBERS:,} are read.")
    declared = 0
    for info in infos:
        _check_name(info.filename)
        if _is_link(info):
            raise ArchiveError("link_in_archive", f"The ZIP member '{info.filename}' is a "
                                                  "symbolic link; links are refused.")
        if info.flag_bits & 0x1:
            raise ArchiveError("encrypted_member", f"The ZIP member '{info.filename}' is "
                                                   "encrypted; upload an unencrypted ZIP.")
        if info.is_dir():
            continue
        declared += info.file_size
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size > MAX_MEMBER_BYTES or (info.file_size > 2**20 and ratio > MAX_RATIO):
            raise ArchiveError("zip_bomb", f"The ZIP member '{info.filename}' expands to "
                                           f"{info.file_size:,} bytes ({ratio:.0f}x its "
                                           "compressed size): refused as a ZIP bomb.")
    if declared > MAX_TOTAL_BYTES:
        raise ArchiveError("zip_bomb", f"The ZIP expands to {declared:,} bytes; at most "
                                       f"{MAX_TOTAL_BYTES:,} are read.")
    return [info for info in infos if not info.is_dir()]


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # The header's size can lie: read one byte more than it declares and refuse if it comes.
    with archive.open(info) as handle:
        data = handle.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise ArchiveError("zip_bomb", f"The ZIP member '{info.filename}' is larger than its "
                                       "header declares: refused.")
    return data


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def read_image_archive(data: bytes, *, labels: bytes | None = None,
                       image_column: str | None = None, target: str | None = None,
                       labelled: bool = True) -> ImageArchive:
    """The image table of a ZIP (see the module docstring). ``labels``: a CSV beside the
    ZIP; ``image_column`` and ``target`` name its file and label columns (default ``file``
    and ``label``). ``labelled=False`` reads images to score: every image under its path,
    folders and CSVs not read as labels (layout ``"unlabelled"``). Raises
    :class:`ArchiveError` for an archive refused as a whole."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ArchiveError("not_a_zip", "The file is not a ZIP archive.") from None
    with archive:
        members = _members(archive)
        images: dict[str, bytes] = {}
        skipped: list[str] = []
        csv_members: list[zipfile.ZipInfo] = []
        total = 0
        for info in members:
            suffix = PurePosixPath(info.filename).suffix.lower()
            if _skipped(info.filename):
                skipped.append(info.filename)
            elif suffix in IMAGE_SUFFIXES:
                images[info.filename] = _read(archive, info)
                total += len(images[info.filename])
            elif suffix == ".csv":
                csv_members.append(info)
            else:
                skipped.append(info.filename)
            if total > MAX_TOTAL_BYTES:
                raise ArchiveError("zip_bomb", "The ZIP expands beyond "
                                               f"{MAX_TOTAL_BYTES:,} bytes.")
        if labelled and labels is None and len(csv_members) == 1:
            labels = _read(archive, csv_members[0])
        else:
            skipped.extend(info.filename for info in csv_members)
    if not images:
        raise ArchiveError("no_images", "The ZIP holds no images (JPEG, PNG, BMP, TIFF, WebP).")
    readable, unreadable, sizes, modes = _decode_all(images)
    if not labelled:
        path_column, label_column, layout, unlabelled, missing = (
            PATH_COLUMN, None, "unlabelled", 0, [])
        frame = pd.DataFrame({PATH_COLUMN: list(readable),
                              IMAGE_BYTES_COLUMN: list(readable.values())})
    elif labels is not None:
        frame, path_column, unlabelled, missing = _with_csv(readable, labels,
                                                            image_column=image_column)
        label_column = target or LABEL_COLUMN
        if label_column not in frame.columns:
            if target:
                raise ArchiveError("labels_column_missing",
                                   f"The labels CSV has no column '{target}'.")
            label_column = None
        layout = "csv"
    else:
        path_column, label_column = PATH_COLUMN, LABEL_COLUMN
        frame, unlabelled, missing = _with_folders(readable), 0, []
        layout = "folders"
    return ImageArchive(frame=frame, layout=layout, path_column=path_column,
                        label_column=label_column, skipped_non_image=len(skipped),
                        skipped_names=tuple(skipped[:LISTED]), unreadable=tuple(unreadable),
                        unlabelled=unlabelled, missing_files=tuple(missing[:LISTED]),
                        sizes=sizes, modes=dict(modes))


def _decode_all(images: dict[str, bytes]):
    """Decode every image once (the check that it is readable), and note sizes and modes."""
    from PIL import Image

    readable: dict[str, bytes] = {}
    unreadable: list[tuple[str, str]] = []
    modes: Counter = Counter()
    widths, heights = [], []
    for name, blob in images.items():
        try:
            image = open_image(blob)
        except ImageDecodeError as exc:
            unreadable.append((name, str(exc)))
            continue
        with Image.open(io.BytesIO(blob)) as raw:
            modes[raw.mode] += 1
        readable[name] = blob
        widths.append(image.size[0])
        heights.append(image.size[1])
    sizes = ({"min_width": min(widths), "max_width": max(widths), "min_height": min(heights),
              "max_height": max(heights)} if widths else {})
    return readable, unreadable, sizes, modes


def _with_folders(images: dict[str, bytes]) -> pd.DataFrame:
    paths = {name: PurePosixPath(name).parts for name in images}
    # One common top folder ("defects/crazing/1.jpg") is the archive's name, not a class.
    depth = 0
    while all(len(parts) > depth + 2 for parts in paths.values()) and \
            len({parts[depth] for parts in paths.values()}) == 1:
        depth += 1
    unfiled = [name for name, parts in paths.items() if len(parts) < depth + 2]
    if unfiled:
        raise ArchiveError("no_class_folders", f"'{unfiled[0]}' is in no class folder: put "
                                               "each class's images in a folder named after "
                                               "the class, or add a CSV of labels.")
    return pd.DataFrame({
        PATH_COLUMN: list(images),
        LABEL_COLUMN: [paths[name][depth] for name in images],
        IMAGE_BYTES_COLUMN: list(images.values()),
    })


def _with_csv(images: dict[str, bytes], labels: bytes, *, image_column: str | None
              ) -> tuple[pd.DataFrame, str, int, list[str]]:
    """(table, its image column, images the CSV does not name, CSV files naming no image).
    Without ``image_column``, the column whose values name the most images is taken."""
    try:
        table = pd.read_csv(io.BytesIO(labels), dtype=str, keep_default_na=False,
                            encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError("bad_labels", f"The labels CSV cannot be read: {exc}") from None
    by_base: dict[str, list[str]] = {}
    for name in images:
        by_base.setdefault(PurePosixPath(name).name, []).append(name)

    def member(value: str) -> str | None:
        value = value.strip().replace("\\", "/").removeprefix("./")
        if value in images:
            return value
        found = by_base.get(PurePosixPath(value).name, [])
        return found[0] if len(found) == 1 else None

    if image_column is None:
        matches = {column: sum(member(v) is not None for v in table[column])
                   for column in table.columns}
        image_column = max(matches, key=matches.get) if matches else None
        if image_column is None or matches[image_column] == 0:
            raise ArchiveError("labels_column_missing",
                               "No column of the labels CSV names the images in the ZIP.")
    elif image_column not in table.columns:
        raise ArchiveError("labels_column_missing",
                           f"The labels CSV has no column '{image_column}' (columns: "
                           f"{', '.join(map(str, table.columns))}).")
    names = [member(v) for v in table[image_column]]
    missing = [v for v, n in zip(table[image_column], names, strict=True) if n is None]
    frame = table.assign(**{image_column: names}).loc[[n is not None for n in names]]
    frame = frame.drop_duplicates(subset=[image_column]).reset_index(drop=True)
    frame[IMAGE_BYTES_COLUMN] = [images[n] for n in frame[image_column]]
    return frame, image_column, len(images) - len(frame), missing
