"""The image family's checks of an uploaded image table (``validate``)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd

from ml_core.families.image.columns import IMAGE_BYTES_COLUMN, IMAGE_DATA_ROLE, MIN_PER_CLASS
from ml_core.spec import ColumnMapping, ProblemSpec
from ml_core.validation import ValidationIssue

# Largest / smallest image area above which sizes are "wildly different": everything is
# resized to 224 x 224, so a 4000 px photo and a 64 px crop show defects at scales the
# model cannot reconcile.
SIZE_SPREAD_WARNING = 16.0


def _rows(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(p) + 1 for p in np.flatnonzero(mask)[:20])


def image_size(blob: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as image:
            return image.size
    except Exception:  # noqa: BLE001 - any unreadable header is reported by the caller
        return None


def validate(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
             ) -> list[ValidationIssue]:
    """Errors: ``no_image_data``, ``class_too_small`` (fewer than 10 images),
    ``conflicting_duplicates`` (the same image under two labels), ``unreadable_images``.
    Warnings: ``duplicate_images`` (same label), ``image_sizes_differ``."""
    data = mapping.role(IMAGE_DATA_ROLE) or IMAGE_BYTES_COLUMN
    if data not in frame.columns:
        return [ValidationIssue(code="no_image_data", message=(
            "No images: upload a ZIP with one folder per class, or a ZIP of images with a "
            "CSV naming each image's label."))]
    issues: list[ValidationIssue] = []
    blobs = [bytes(b) for b in frame[data].tolist()]
    if mapping.target and mapping.target in frame.columns:
        labels = frame[mapping.target].astype("string").str.strip()
        counts = labels.value_counts()
        small = counts[counts < MIN_PER_CLASS]
        for label, count in small.items():
            issues.append(ValidationIssue(
                code="class_too_small", column=mapping.target,
                message=f"Class '{label}' has {int(count)} images; each class needs at least "
                        f"{MIN_PER_CLASS} (to train, validate and test on it). Add images or "
                        "merge the class."))
        digests = pd.Series([hashlib.sha256(b).hexdigest() for b in blobs], index=frame.index)
        table = pd.DataFrame({"digest": digests, "label": labels})
        per_digest = table.groupby("digest")["label"].nunique()
        conflicting = table["digest"].isin(per_digest[per_digest > 1].index).to_numpy()
        if conflicting.any():
            issues.append(ValidationIssue(
                code="conflicting_duplicates", column=mapping.target, rows=_rows(conflicting),
                message=f"{int(conflicting.sum())} images appear under more than one label "
                        "(the same file in two classes): fix their labels or remove the "
                        "copies."))
        repeated = table.duplicated(keep="first").to_numpy()
        if repeated.any():
            issues.append(ValidationIssue(
                code="duplicate_images", severity="warning", rows=_rows(repeated),
                message=f"{int(repeated.sum())} images are exact copies of another image with "
                        "the same label; copies could land on both sides of the split and "
                        "flatter the test score."))
    sizes = [image_size(b) for b in blobs]
    unreadable = np.array([s is None for s in sizes])
    if unreadable.any():
        issues.append(ValidationIssue(
            code="unreadable_images", rows=_rows(unreadable),
            message=f"{int(unreadable.sum())} images cannot be read."))
    areas = np.array([w * h for w, h in (s for s in sizes if s is not None)], dtype=float)
    if len(areas) and areas.min() > 0 and areas.max() / areas.min() > SIZE_SPREAD_WARNING:
        small_side = min((s for s in sizes if s), key=lambda s: s[0] * s[1])
        large_side = max((s for s in sizes if s), key=lambda s: s[0] * s[1])
        issues.append(ValidationIssue(
            code="image_sizes_differ", severity="warning",
            message=f"Image sizes differ widely (from {small_side[0]} x {small_side[1]} to "
                    f"{large_side[0]} x {large_side[1]} pixels); all are resized to 224 x 224, "
                    "so defects appear at very different scales. Crop or resize consistently."))
    return issues
