"""The image family's validation: small classes, conflicting and repeated copies, sizes."""

from __future__ import annotations

import pandas as pd
from PIL import Image

from ml_core.families.image import validate
from ml_core.families.image.columns import IMAGE_BYTES_COLUMN
from ml_core.spec import ColumnMapping
from verticals.manufacturing.demo_images import encoded, image_frame
from verticals.manufacturing.vertical import VISUAL_INSPECTION

MAPPING = ColumnMapping(target="label", roles=(("image", "file"),))


def _codes(frame: pd.DataFrame) -> dict[str, str]:
    return {issue.code: issue.severity for issue in validate(frame, MAPPING, VISUAL_INSPECTION)}


def test_clean_images_raise_nothing() -> None:
    assert _codes(image_frame(10)) == {}


def test_a_class_under_ten_images_is_an_error() -> None:
    frame = image_frame((10, 10, 9))
    issues = validate(frame, MAPPING, VISUAL_INSPECTION)
    assert [i.code for i in issues] == ["class_too_small"]
    assert "'spots' has 9 images" in issues[0].message


def test_copies_conflicting_labels_are_errors_and_same_label_copies_warnings() -> None:
    frame = image_frame(10)
    copy_same = frame.iloc[[0]].assign(file="ok/again.png")
    copy_other = frame.iloc[[1]].assign(file="spots/wrong.png", label="spots")
    codes = _codes(pd.concat([frame, copy_same, copy_other], ignore_index=True))
    assert codes == {"conflicting_duplicates": "error", "duplicate_images": "warning"}


def test_wildly_different_sizes_are_a_warning() -> None:
    frame = image_frame(10)
    frame.loc[0, IMAGE_BYTES_COLUMN] = encoded(Image.new("L", (1024, 1024), 128))
    assert _codes(frame) == {"image_sizes_differ": "warning"}
