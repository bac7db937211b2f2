"""Small inspection ZIPs generated in memory for tests (synthetic surfaces from the
manufacturing demo: ``ok``, ``scratches``, ``spots``), and their upload and mapping."""

from __future__ import annotations

import io
import zipfile

from verticals.manufacturing.demo_images import image_frame

IMAGE_BYTES = "__image_bytes__"


def inspection_zip(per_class: int = 12, *, seed: int = 0, labels_csv: bool = True,
                   extra: dict[str, bytes] | None = None) -> bytes:
    """One folder per class, and (``labels_csv``) a ``labels.csv`` naming each image's
    label, production line and camera; ``extra`` members are added as given."""
    frame = image_frame(per_class, seed=seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, blob in zip(frame["file"], frame[IMAGE_BYTES], strict=True):
            archive.writestr(name, blob)
        if labels_csv:
            archive.writestr("labels.csv", frame[["file", "label", "line", "camera"]].to_csv(
                index=False))
        for name, blob in (extra or {}).items():
            archive.writestr(name, blob)
    return buffer.getvalue()


def uploaded_version(user, data: bytes, *, name: str = "Surfaces", confirm: bool = True):
    """The ZIP uploaded to manufacturing / visual inspection, its suggested mapping
    confirmed (``confirm``)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from ingestion.services import confirm_mapping, upload_dataset
    from ml_core.spec import ColumnMapping

    version = upload_dataset(user=user, vertical="manufacturing", problem="visual_inspection",
                             file=SimpleUploadedFile("surfaces.zip", data), name=name)
    if confirm and version.status == "pending":
        version = confirm_mapping(version=version, user=user,
                                  mapping=ColumnMapping.from_dict(version.suggested_mapping))
    return version
