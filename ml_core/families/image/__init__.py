"""Image classification by transfer learning (family ``image_classifier``).

The family contract of :mod:`ml_core.families`: ``run`` and ``validate``; ``load`` and
``predict`` score saved models; ``read_archive`` reads an uploaded ZIP into the table
``run`` takes (:mod:`.archive`). See :mod:`.family` for the model, :mod:`.backbone` for
BatchNorm.

The hooks are imported on first use, so that a vertical naming a constant of :mod:`.data`
does not load torch, Opacus and scikit-learn when Django starts.
"""

from __future__ import annotations

from importlib import import_module

_HOOKS = {"run": "family", "load": "family", "predict": "family", "MODEL_FAMILY": "family",
          "validate": "checks", "read_archive": "archive"}

__all__ = sorted(_HOOKS)


def __getattr__(name: str):
    if name not in _HOOKS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f"{__name__}.{_HOOKS[name]}")
    return getattr(module, "read_image_archive" if name == "read_archive" else name)


# --- the registration (light: the hooks above import torch only when called) ----------------

from ml_core.families.base import (  # noqa: E402
    MetricDeclaration,
    ModelFamily,
    Supports,
    register_family,
)
from ml_core.families.image.columns import IMAGE_ROLE  # noqa: E402
from ml_core.spec import ColumnRole, TaskType  # noqa: E402


@register_family
class ImageClassifierFamily(ModelFamily):
    name = "image_classifier"
    task_types = (TaskType.IMAGE_CLASSIFICATION,)
    # The image's path in the ZIP (the row id of predictions), and its class label.
    required_roles = (ColumnRole.TARGET.value, IMAGE_ROLE)
    optional_roles = (ColumnRole.ID.value, ColumnRole.PRIVACY_UNIT.value)
    # Nothing computed from the images is released but the DP-SGD classifier.
    artifact_public = frozenset({"backbone", "classes", "split"})
    metrics = (
        MetricDeclaration("macro_f1", higher_is_better=True),
        MetricDeclaration("accuracy", higher_is_better=True),
    )
    primary_metric = "macro_f1"
    # Confusion matrices, per-class precision and recall, and pictures: the most confident
    # mistakes as thumbnails and Grad-CAM overlays (PNG data URLs in the result, which the
    # platform moves into the run's artifact folder, encrypted, before storing the result).
    chart_kinds = ("confusion_with_images",)
    # One image (multipart) through the prediction API, ZIPs of images as batch jobs, both
    # read by the upload's safe archive reader and scored by ``predict``.
    supports = Supports(online_prediction=True, batch_scoring=True)

    def _run(self, **inputs):
        return import_module(f"{__name__}.family").run(**inputs)

    def validate(self, frame, mapping, spec):
        return import_module(f"{__name__}.checks").validate(frame, mapping, spec)

    def load(self, path):
        return import_module(f"{__name__}.family").load(path)

    def predict(self, loaded, frame):
        return import_module(f"{__name__}.family").predict(loaded, frame)

    def thumbnail(self, data: bytes, *, size: int = 96) -> bytes | None:
        """A small PNG of one uploaded image (the upload's contact sheet); None when the
        image cannot be read (:func:`.report.thumbnail`)."""
        return import_module(f"{__name__}.report").thumbnail(data, size=size)

    def read_archive(self, data, **options):
        """An uploaded ZIP as the image table (:func:`.archive.read_image_archive`)."""
        return import_module(f"{__name__}.archive").read_image_archive(data, **options)
