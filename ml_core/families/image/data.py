"""Preparing an image table: reading the rows, splitting them, and the augmented views.

The frame a run receives has one row per image: the image's path (role ``image``; it is the
row id of the predictions), its bytes (role ``image_data``, column :data:`IMAGE_BYTES_COLUMN`
as :mod:`ml_core.families.image.archive` builds it), the label (the target) and any grouping
columns (line, camera, shift: ``mapping.sensitive``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ml_core.families.image.columns import IMAGE_BYTES_COLUMN, IMAGE_DATA_ROLE, IMAGE_ROLE
from ml_core.families.image.decoding import ImageDecodeError, open_image, pixels
from ml_core.spec import ColumnMapping, TrainConfig


def image_columns(frame: pd.DataFrame, mapping: ColumnMapping) -> tuple[str | None, str]:
    """(path column or None, bytes column) of ``frame`` under ``mapping``."""
    data = mapping.role(IMAGE_DATA_ROLE) or IMAGE_BYTES_COLUMN
    if data not in frame.columns:
        raise ValueError(f"no image data column {data!r}: image tables come from a ZIP "
                         "read by ml_core.families.image.archive")
    path = mapping.role(IMAGE_ROLE)
    return (path if path in frame.columns else None), data


@dataclass(frozen=True)
class Prepared:
    """The rows of an image table as arrays (bytes stay encoded until a batch needs them)."""

    row_ids: np.ndarray  # the image path (or the frame's index)
    blobs: list[bytes]
    labels: np.ndarray | None  # class index per row; None when scoring without labels
    classes: tuple[str, ...]


def prepare(frame: pd.DataFrame, mapping: ColumnMapping, *,
            classes: tuple[str, ...] | None = None) -> Prepared:
    """Rows, encoded images and class indices. ``classes`` fixes the label order (a saved
    model's); otherwise it is the sorted label values. Rows whose label is missing, or not
    one of ``classes``, raise ``ValueError``."""
    path, data = image_columns(frame, mapping)
    row_ids = (frame[path].astype(str) if path else pd.Series(frame.index.astype(str))).to_numpy()
    blobs = [bytes(value) for value in frame[data].tolist()]
    labels = None
    if mapping.target and mapping.target in frame.columns:
        text = frame[mapping.target].astype("string")
        if text.isna().any():
            raise ValueError(f"{int(text.isna().sum())} images have no label")
        values = text.str.strip().to_numpy(dtype=object)
        if classes is None:
            classes = tuple(sorted(set(values)))
        index = {label: k for k, label in enumerate(classes)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise ValueError(f"labels the model does not know: {', '.join(unknown[:5])}")
        labels = np.array([index[v] for v in values], dtype=np.int64)
    return Prepared(row_ids=row_ids, blobs=blobs, labels=labels, classes=tuple(classes or ()))


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    summary: dict


def stratified_split(labels: np.ndarray, train: TrainConfig) -> Split:
    """Training, validation and test rows, each with every class's share (seeded): the unit
    is the image, so no image is on two sides; duplicates across classes are refused by
    :func:`ml_core.families.image.validate` before a run starts."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    rest, test = train_test_split(rows, test_size=train.test_fraction, stratify=labels,
                                  random_state=train.seed)
    val_share = train.val_fraction / (1.0 - train.test_fraction)
    fit, val = train_test_split(rest, test_size=val_share, stratify=labels[rest],
                                random_state=train.seed)
    fit, val, test = np.sort(fit), np.sort(val), np.sort(test)
    return Split(train=fit, val=val, test=test, summary={
        "method": "stratified", "unit": "image", "train": int(len(fit)), "val": int(len(val)),
        "test": int(len(test)), "seed": int(train.seed),
    })


def person_split(labels: np.ndarray, persons: np.ndarray, train: TrainConfig) -> Split:
    """Training, validation and test rows with every person's (the privacy unit's) images on
    one side only, each person placed by a seeded hash of their id alone
    (:func:`ml_core.data.split_by_person`)."""
    from ml_core.data import split_by_person

    fit, val, test, method = split_by_person(
        pd.Series(persons), test_fraction=train.test_fraction, val_fraction=train.val_fraction,
        seed=train.seed)
    return Split(train=fit, val=val, test=test, summary={
        "method": method, "unit": "person", "train": int(len(fit)), "val": int(len(val)),
        "test": int(len(test)), "persons_train": int(pd.Series(persons[fit]).nunique()),
        "seed": int(train.seed),
    })


def batch_pixels(blobs: list[bytes], rows: np.ndarray,
                 transform=None) -> torch.Tensor:
    """(len(rows), 3, 224, 224) pixels of the images ``rows`` (decoded now, one batch at a
    time), each through ``transform(image)`` first when given (augmentation)."""
    images = []
    for row in rows:
        try:
            image = open_image(blobs[int(row)])
        except ImageDecodeError as exc:
            raise ValueError(f"image {int(row) + 1} cannot be read: {exc}") from None
        images.append(pixels(transform(image) if transform is not None else image))
    return torch.stack(images)


def augmented(image, rng: np.random.Generator):
    """A random view of a surface image: one of the 8 flips and 90-degree rotations (surface
    defects have no orientation), a crop keeping 85-100 % of each side, brightness x0.8-1.2."""
    from PIL import Image, ImageEnhance

    transpose = int(rng.integers(0, 8))
    if transpose:
        image = image.transpose([Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM,
                                 Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                 Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
                                 Image.Transpose.TRANSVERSE][transpose - 1])
    width, height = image.size
    keep = float(rng.uniform(0.85, 1.0))
    crop_w, crop_h = max(1, int(width * keep)), max(1, int(height * keep))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    return ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.8, 1.2)))
