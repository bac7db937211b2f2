"""What the image report shows: metrics, the confusion matrix, per-class precision and
recall, the most confident mistakes, Grad-CAM saliency maps and the group audit of
per-class recall (a model that misses defects on one line or camera is the disparity that
matters in inspection)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from ml_core import group_metrics
from ml_core.families.image.backbone import ImageTop
from ml_core.families.image.decoding import ImageDecodeError, open_image, thumbnail_png
from ml_core.spec import ProblemSpec

N_MISTAKES = 8
N_SALIENCY = 6
THUMBNAIL = 96


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """``accuracy`` and ``macro_f1`` (every class counts the same: a rare defect class
    weighs as much as the common 'ok')."""
    labels = list(range(n_classes))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
    }


def per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Precision, recall and support per class, in ``classes`` order."""
    labels = list(range(len(classes)))
    return {
        "labels": list(classes),
        "precision": [float(v) for v in precision_score(y_true, y_pred, labels=labels,
                                                        average=None, zero_division=0)],
        "recall": [float(v) for v in recall_score(y_true, y_pred, labels=labels, average=None,
                                                  zero_division=0)],
        "support": np.bincount(y_true, minlength=len(classes)).tolist(),
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> dict:
    return {"labels": list(classes), "matrix": confusion_matrix(
        y_true, y_pred, labels=list(range(len(classes)))).tolist()}


def _png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumbnail(blob: bytes):
    try:
        return open_image(blob)
    except ImageDecodeError:
        return None


def thumbnail(blob: bytes, *, size: int = THUMBNAIL) -> bytes | None:
    """A PNG of the image in ``blob``, longest side ``size`` (decoded safely: upright, 8-bit
    RGB); None when it cannot be read."""
    image = _thumbnail(blob)
    return thumbnail_png(image, size=size) if image is not None else None


def confident_mistakes(*, probabilities: np.ndarray, y_true: np.ndarray, blobs: list[bytes],
                       row_ids: np.ndarray, classes: tuple[str, ...],
                       limit: int = N_MISTAKES) -> list[dict]:
    """The wrong predictions the model was surest of, with thumbnails (PNG data URLs)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    order = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:limit]
    shown = []
    for row in order:
        image = _thumbnail(blobs[int(row)])
        shown.append({
            "image": str(row_ids[row]), "true": classes[int(y_true[row])],
            "predicted": classes[int(predicted[row])],
            "confidence": float(probabilities[row, predicted[row]]),
            "thumbnail": _png_data_url(thumbnail_png(image, size=THUMBNAIL)) if image else None,
        })
    return shown


def grad_cam(top: ImageTop, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM on the trunk's last feature map (Selvaraju et al. 2017): for each image, the
    ReLU of the feature channels weighted by the mean gradient of the predicted class's logit;
    (maps (n, 7, 7) scaled to 0-1 per image, predicted class per image)."""
    top = top.eval()
    features = features.detach().clone().requires_grad_(True)
    logits = top(features)
    chosen = logits.argmax(dim=1)
    logits.gather(1, chosen[:, None]).sum().backward()
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    maps = torch.relu((weights * features).sum(dim=1)).detach()
    peak = maps.flatten(1).max(dim=1).values.clamp_min(1e-12)
    return (maps / peak[:, None, None]).numpy(), chosen.numpy()


def saliency_overlay(image, heat: np.ndarray, *, size: int = THUMBNAIL * 2) -> bytes:
    """The image with its Grad-CAM map in red on top, as a PNG."""
    from PIL import Image

    base = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    mask = Image.fromarray((heat * 255).astype(np.uint8), mode="L").resize(
        (size, size), Image.Resampling.BILINEAR)
    red = Image.new("RGB", (size, size), (255, 0, 0))
    # Half the heat's strength at most, so that the surface stays visible under it.
    blended = Image.composite(red, base, mask.point(lambda v: v // 2))
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG")
    return buffer.getvalue()


def saliency_maps(*, top: ImageTop, features: torch.Tensor, rows: np.ndarray,
                  y_true: np.ndarray, blobs: list[bytes], row_ids: np.ndarray,
                  classes: tuple[str, ...], limit: int = N_SALIENCY) -> list[dict]:
    """Grad-CAM overlays for a few test images, one per class first (then more)."""
    picked: list[int] = []
    for k in range(len(classes)):
        found = np.flatnonzero(y_true[rows] == k)
        if len(found):
            picked.append(int(found[0]))
    picked = picked[:limit]
    if not picked:
        return []
    maps, chosen = grad_cam(top, features[rows[picked]])
    shown = []
    for position, heat, predicted in zip(picked, maps, chosen, strict=True):
        row = int(rows[position])
        image = _thumbnail(blobs[row])
        if image is None:
            continue
        shown.append({"image": str(row_ids[row]), "true": classes[int(y_true[row])],
                      "predicted": classes[int(predicted)],
                      "overlay": _png_data_url(saliency_overlay(image, heat))})
    return shown


def recall_by_group(*, y_true: np.ndarray, y_pred: np.ndarray, groups: pd.DataFrame,
                    classes: tuple[str, ...], spec: ProblemSpec) -> dict:
    """Per group (line, camera): the lowest per-class recall (the defect class the model
    misses most there), the macro recall and the accuracy; ratio checks on the worst-class
    recall at the policy's four-fifths level. Every group's per-class recalls are listed."""
    if groups.shape[1] == 0 or len(y_true) == 0:
        return {}
    policy = spec.fairness
    labels = list(range(len(classes)))

    def worst_class_recall(truth: np.ndarray, predicted: np.ndarray) -> float:
        present = sorted(set(truth.tolist()))
        values = recall_score(truth, predicted, labels=present, average=None, zero_division=0)
        return float(np.min(values))

    def macro_recall(truth: np.ndarray, predicted: np.ndarray) -> float:
        present = sorted(set(truth.tolist()))
        return float(recall_score(truth, predicted, labels=present, average="macro",
                                  zero_division=0))

    common = {"sensitive": groups, "kind": policy.kind, "min_score_ratio":
              policy.min_disparate_impact_ratio, "min_group_size": policy.min_group_size}
    worst = group_metrics.score_by_group(y_true=y_true, y_score=y_pred,
                                         metric=worst_class_recall, name="worst_class_recall",
                                         **common)
    macro = group_metrics.score_by_group(y_true=y_true, y_score=y_pred, metric=macro_recall,
                                         name="macro_recall", **common)
    report = {}
    for attribute, first in worst.items():
        column = groups[attribute].astype(str).to_numpy()
        by_group = {}
        for group, values in first["by_group"].items():
            mask = column == group
            recalls = recall_score(y_true[mask], y_pred[mask], labels=labels, average=None,
                                   zero_division=0)
            support = np.bincount(y_true[mask], minlength=len(classes))
            by_group[group] = {
                **values,
                "macro_recall": macro[attribute]["by_group"][group]["macro_recall"],
                "recall_by_class": {classes[k]: (float(recalls[k]) if support[k] else None)
                                    for k in labels},
            }
        report[attribute] = {**first, "by_group": by_group,
                             "disparities": {**first["disparities"], **{
                                 k: v for k, v in macro[attribute]["disparities"].items()
                                 if k.startswith("macro_recall")}}}
    return report
