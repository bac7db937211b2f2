"""Image classification by transfer learning (family "image_classifier"): the hooks.

The run is a sequence of separate hooks (prepare and split, extract features, baselines,
build, fit, evaluate, save, load, predict), so that the family can be registered with the
run skeleton of the model-family refactor without being rewritten.

Model: ImageNet-pretrained EfficientNet-Lite0 (:mod:`ml_core.families.image.backbone`). The
last ``trainable_blocks`` MBConv blocks (default :data:`TRAINABLE_BLOCKS`: the last one),
the head's 1x1 convolution and the classifier are fine-tuned, with every BatchNorm's
statistics frozen (folded into its convolution); the network below is frozen and its
activations at the first trainable block are computed once per image (and cached across
runs with ``feature_cache``), so every step runs only the top.

* Private model: the top, trained with DP-SGD through :func:`fit_module` (Poisson sampling,
  book-keeping clipping of the 1x1 convolutions as Linear layers over positions, one
  accountant). Privacy unit: the image. Nothing data-dependent is computed outside DP-SGD:
  the frozen layers and the starting point are the pretrained network's, no feature is
  scaled by statistics of the data, the classifier starts at zero.
* Non-private twin (and the model of a non-private run): the same top trained on the
  images plus :data:`AUGMENT_VIEWS` augmented views of each training image (flips,
  90-degree rotations, small crops, brightness), whose activations are extracted once too.
* References: logistic regression on the frozen pretrained features (pooled 1280), and the
  majority class.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from ml_core import cancellation, fairness
from ml_core.artifacts import library_versions
from ml_core.checkpoints import checkpoint_path
from ml_core.families.image import report
from ml_core.families.image.archive import PATH_COLUMN
from ml_core.families.image.backbone import (
    MAX_TRAINABLE_BLOCKS,
    MODEL_NAME,
    ImageTop,
    Trunk,
    extract_features,
    first_trainable,
    load_backbone,
    pretrained_top,
    pretrained_weights_path,
)
from ml_core.families.image.columns import IMAGE_ROLE
from ml_core.families.image.data import (
    Prepared,
    Split,
    augmented,
    batch_pixels,
    person_split,
    prepare,
    stratified_split,
)
from ml_core.families.module_artifacts import load_state, save_module
from ml_core.families.tensor_training import FittedModule, fit_module
from ml_core.person_privacy import PrivatePlan
from ml_core.privacy_statement import privacy_notes
from ml_core.progress import report_stage
from ml_core.runner import class_predictions
from ml_core.spec import (
    ColumnMapping,
    PrivacyConfig,
    ProblemSpec,
    ProgressSink,
    StopCheck,
    TrainConfig,
)
from ml_core.trainer import TrainingCancelled

MODEL_FAMILY = "image_classifier"
METRICS = ("macro_f1", "accuracy")
BASELINES = ("frozen_logistic", "majority")
# Augmented views per training image for the non-private model (features extracted once).
AUGMENT_VIEWS = 1
# The last MBConv blocks fine-tuned with the head (0: the head alone); docs/images.md has the
# measurement behind the default.
TRAINABLE_BLOCKS = 1
# Logistic regression on frozen features: the reference the issue measured (0.994 on NEU).
REFERENCE_C = 1.0


# --- features ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """The activations at the input of the first trainable block (n, C, 7, 7) of every row,
    and of the augmented training views."""

    rows: torch.Tensor
    views: torch.Tensor  # (len(train) * AUGMENT_VIEWS, C, 7, 7)
    view_rows: np.ndarray  # the training row each view comes from


def _cache_key(prepared: Prepared, *, augment_rows: np.ndarray, views: int, seed: int,
               backbone: dict) -> str:
    digest = hashlib.sha256(repr((sorted(backbone.items()), views, seed)).encode())
    digest.update(np.asarray(augment_rows, dtype=np.int64).tobytes())
    for blob in prepared.blobs:
        digest.update(hashlib.sha256(blob).digest())
    return digest.hexdigest()


def extract(trunk: Trunk, prepared: Prepared, *, augment_rows: np.ndarray, views: int,
            seed: int, upto: int, cache_dir: Path | None = None, backbone: dict | None = None,
            ) -> Features:
    """The activations at the input of block ``upto`` (the first trainable block) of all
    images, and of ``views`` augmented views of ``augment_rows``, in batches (decoding one
    batch of images at a time).

    With ``cache_dir``, they are kept there under a key of the images' bytes, the backbone's
    weights, the views and the seed (and the block), and a later run on the same images
    reuses them (extraction is most of a run's time on a CPU); a cache taken at an earlier
    block serves too, through the frozen blocks in between."""
    cached = None
    if cache_dir is not None:
        key = _cache_key(prepared, augment_rows=augment_rows, views=views, seed=seed,
                         backbone=backbone or {})
        cached = Path(cache_dir) / f"image-features-{key}-b{upto}.pt"
        earlier = sorted((int(path.stem.rsplit("-b", 1)[1]), path)
                         for path in Path(cache_dir).glob(f"image-features-{key}-b*.pt")
                         if int(path.stem.rsplit("-b", 1)[1]) <= upto)
        if earlier:
            start, path = earlier[-1]
            stored = torch.load(path, map_location="cpu", weights_only=True)
            return Features(rows=advance(trunk, stored["rows"], start, upto),
                            views=advance(trunk, stored["views"], start, upto),
                            view_rows=stored["view_rows"].numpy())
    n = len(prepared.blobs)
    everything = np.arange(n)
    rows = extract_features(trunk, lambda part: batch_pixels(prepared.blobs, everything[part]),
                            n=n, upto=upto)
    view_rows = np.tile(augment_rows, views)
    rng = np.random.default_rng(seed)
    view_features = extract_features(
        trunk, lambda part: batch_pixels(prepared.blobs, view_rows[part],
                                         transform=lambda image: augmented(image, rng)),
        n=len(view_rows), upto=upto)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"rows": rows, "views": view_features,
                    "view_rows": torch.from_numpy(view_rows)}, cached)
    return Features(rows=rows, views=view_features, view_rows=view_rows)


@torch.no_grad()
def advance(trunk: Trunk, features: torch.Tensor, start: int, upto: int, *,
            batch: int = 256) -> torch.Tensor:
    """Activations at the input of block ``start`` carried to the input of block ``upto``
    through the frozen blocks in between (a cache taken earlier serves a later cut)."""
    if start == upto:
        return features
    parts = []
    for begin in range(0, len(features), batch):
        x = features[begin:begin + batch]
        for block in trunk.blocks[start:upto]:
            x = block(x)
        parts.append(x)
    return torch.cat(parts) if parts else torch.zeros((0, *trunk.activation_shape(upto)))


@torch.no_grad()
def pooled_features(backbone: nn.Module, features: torch.Tensor, *, trainable_blocks: int,
                    batch: int = 256) -> torch.Tensor:
    """(n, 1280): the pretrained network's pooled features (what the reference reads),
    from the activations at the input of the first trainable block."""
    top = pretrained_top(backbone, n_classes=1, seed=0,
                         trainable_blocks=trainable_blocks).eval()
    parts = [top.pooled(features[start:start + batch])
             for start in range(0, len(features), batch)]
    return torch.cat(parts) if parts else torch.zeros((0, top.classifier.in_features))


# --- references ----------------------------------------------------------------------------


def reference_predictions(*, pooled: np.ndarray, labels: np.ndarray, split: Split,
                          n_classes: int) -> dict[str, np.ndarray]:
    """Test predictions of the two references: logistic regression on the pretrained pooled
    features (standardised on the training rows), and the majority training class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=REFERENCE_C, max_iter=3000))
    # One compiled fit: cancellable while it runs (ml_core.cancellation.call).
    cancellation.call(lambda: probe.fit(pooled[split.train], labels[split.train]))
    majority = int(np.bincount(labels[split.train], minlength=n_classes).argmax())
    return {"frozen_logistic": probe.predict(pooled[split.test]).astype(np.int64),
            "majority": np.full(len(split.test), majority, dtype=np.int64)}


# --- building and fitting ------------------------------------------------------------------


def build_top(backbone: nn.Module, *, n_classes: int, seed: int, trainable_blocks: int):
    """The ``build`` callable :func:`fit_module` calls for a fresh top."""
    return lambda: pretrained_top(backbone, n_classes=n_classes, seed=seed,
                                  trainable_blocks=trainable_blocks)


def predict_probabilities(top: nn.Module, inputs: torch.Tensor, *, batch: int = 256
                          ) -> np.ndarray:
    """Softmax probabilities (n, classes) of ``top`` on the activations it starts from."""
    top = top.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch):
            parts.append(torch.softmax(top(inputs[start:start + batch]), dim=1))
    if not parts:
        return np.zeros((0, getattr(top, "n_classes", 1)))
    return torch.cat(parts).numpy()


def fit(*, backbone: nn.Module, inputs: torch.Tensor, labels: np.ndarray,
        val_inputs: torch.Tensor, val_labels: np.ndarray, n_classes: int, train: TrainConfig,
        privacy: PrivacyConfig | None, stage: str, progress: ProgressSink | None,
        should_stop: StopCheck | None, checkpoint_dir: Path | None,
        trainable_blocks: int = TRAINABLE_BLOCKS,
        persons: np.ndarray | None = None) -> FittedModule:
    """Fine-tune the top (the last ``trainable_blocks`` blocks, the projection and the
    classifier) on the cached activations ``inputs`` with cross-entropy (mean-reduced, as
    the private loop's ``loss_reduction="mean"`` needs); early stopping on validation macro
    F1. Private when ``privacy`` is enabled."""
    y = torch.as_tensor(labels, dtype=torch.long)

    def loss_fn(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return F.cross_entropy(module(batch[0]), batch[1])

    def val_score(module: nn.Module) -> float:
        predicted = predict_probabilities(module, val_inputs).argmax(axis=1)
        return report.classification_metrics(val_labels, predicted, n_classes)["macro_f1"]

    return fit_module(
        build=build_top(backbone, n_classes=n_classes, seed=train.seed,
                        trainable_blocks=trainable_blocks),
        tensors=(inputs, y), loss_fn=loss_fn, val_score=val_score, train=train,
        privacy=privacy, stage=stage, progress=progress, should_stop=should_stop,
        checkpoint_path=checkpoint_path(checkpoint_dir, stage), persons=persons,
        # A private classifier is its last DP-SGD step's: no epoch chosen on private images.
        select_on_validation=privacy is None or not privacy.enabled)


# --- the entry point -----------------------------------------------------------------------


def run(
    *, frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec,
    privacy: PrivacyConfig | None = None, train: TrainConfig | None = None,
    artifact_dir: Path, progress: ProgressSink | None = None,
    should_stop: StopCheck | None = None, checkpoint_dir: Path | None = None,
    pretrained: bool = True, feature_cache: Path | None = None,
    trainable_blocks: int = TRAINABLE_BLOCKS,
):
    """Train, evaluate against the references, audit per-class recall by group, and save an
    image classifier. Same contract as :func:`ml_core.pipeline.run_training`; see the module
    docstring. ``pretrained=False`` starts from random weights (tests of the plumbing);
    ``feature_cache`` keeps the extracted features for later runs on the same images;
    ``trainable_blocks`` (0-4) sets how many of the last MBConv blocks are fine-tuned with
    the head."""
    from ml_core.pipeline import TrainingResult, json_ready, resolve_inputs

    frame, privacy, train = resolve_inputs(frame=frame, spec=spec, privacy=privacy, train=train)
    report_stage(progress, "preparing", train.epochs)
    prepared = prepare(frame, mapping)
    labels, classes = prepared.labels, prepared.classes
    if labels is None:
        raise ValueError(f"the label column {mapping.target!r} is not in the table")
    n_classes = len(classes)
    # The privacy unit's images stay on one side and are sampled together; without a
    # person column each image is a person (the notes say so).
    unit_column = spec.privacy_unit.column(mapping)
    persons = frame[unit_column].to_numpy() if unit_column in frame.columns else None
    split = (person_split(labels, persons, train) if persons is not None
             else stratified_split(labels, train))
    backbone = load_backbone(pretrained=pretrained)
    trunk = Trunk(backbone)
    upto = first_trainable(backbone, trainable_blocks)
    # The non-private twin fine-tunes further: one block more than the private model (and
    # augmented views). Extraction stops at the twin's cut; the private model's inputs are
    # those carried through the one frozen block between.
    twin_blocks = (min(trainable_blocks + 1, MAX_TRAINABLE_BLOCKS) if privacy.enabled
                   else trainable_blocks)
    twin_upto = first_trainable(backbone, twin_blocks)

    report_stage(progress, "extracting_features", train.epochs)
    features = extract(trunk, prepared, augment_rows=split.train, views=AUGMENT_VIEWS,
                       seed=train.seed, upto=twin_upto, cache_dir=feature_cache,
                       backbone=backbone_identity(pretrained=pretrained))
    rows = (features.rows if twin_upto == upto
            else advance(trunk, features.rows, twin_upto, upto))
    pooled = pooled_features(backbone, rows, trainable_blocks=trainable_blocks)

    report_stage(progress, "baseline", train.epochs)
    references = reference_predictions(pooled=pooled.numpy(), labels=labels, split=split,
                                       n_classes=n_classes)
    y_test = labels[split.test]
    reference_metrics = {name: report.classification_metrics(y_test, predicted, n_classes)
                         for name, predicted in references.items()}

    common = {"backbone": backbone, "val_labels": labels[split.val], "n_classes": n_classes,
              "train": train, "progress": progress, "should_stop": should_stop,
              "checkpoint_dir": checkpoint_dir}
    at_model_cut = {"val_inputs": rows[split.val], "trainable_blocks": trainable_blocks}
    at_twin_cut = {"val_inputs": features.rows[split.val], "trainable_blocks": twin_blocks}
    augmented_inputs = torch.cat([features.rows[split.train], features.views])
    augmented_labels = np.concatenate([labels[split.train], labels[features.view_rows]])
    twin = None
    if privacy.enabled:
        train_persons = persons[split.train] if persons is not None else None
        plan = _private_plan(privacy=privacy, unit_column=unit_column,
                             n_units=len(set(persons)) if persons is not None else len(labels))
        sgd = plan.sgd_for(n_units=(len(set(train_persons)) if train_persons is not None
                                    else len(split.train)), train=train)
        main = plan.charged(
            lambda sgd: fit(inputs=rows[split.train], labels=labels[split.train],
                            privacy=sgd, stage="training", persons=train_persons,
                            **common, **at_model_cut),
            sgd=sgd, spec=spec, mapping=mapping)
        # A cancel from here on (the twin, the audit) reports what the model spent.
        cancellation.record_spent(main.privacy)
        try:
            twin = fit(inputs=augmented_inputs, labels=augmented_labels, privacy=None,
                       stage="training_twin", **common, **at_twin_cut)
        except TrainingCancelled as cancelled:
            raise TrainingCancelled(privacy=main.privacy) from cancelled
    else:
        main = fit(inputs=augmented_inputs, labels=augmented_labels, privacy=None,
                   stage="training", **common, **at_twin_cut)

    report_stage(progress, "auditing", train.epochs)
    probabilities = predict_probabilities(main.module, rows[split.test])
    predicted = probabilities.argmax(axis=1)
    metrics = report.classification_metrics(y_test, predicted, n_classes)
    test_frame = frame.iloc[split.test]
    groups = fairness.sensitive_frame(test_frame, mapping, spec).reset_index(drop=True)
    audit = report.recall_by_group(y_true=y_test, y_pred=predicted, groups=groups,
                                   classes=classes, spec=spec)
    twin_metrics = twin_audit = None
    if twin is not None:
        twin_predicted = predict_probabilities(twin.module,
                                               features.rows[split.test]).argmax(axis=1)
        twin_metrics = report.classification_metrics(y_test, twin_predicted, n_classes)
        twin_audit = report.recall_by_group(y_true=y_test, y_pred=twin_predicted,
                                            groups=groups, classes=classes, spec=spec)
    test_blobs = [prepared.blobs[int(r)] for r in split.test]
    test_ids = prepared.row_ids[split.test]
    charts = {
        "confusion": report.confusion(y_test, predicted, classes),
        "baseline_confusion": report.confusion(y_test, references["frozen_logistic"], classes),
        "per_class": report.per_class(y_test, predicted, classes),
        "confident_mistakes": report.confident_mistakes(
            probabilities=probabilities, y_true=y_test, blobs=test_blobs, row_ids=test_ids,
            classes=classes),
        "saliency": report.saliency_maps(
            top=main.module, features=rows[split.test], rows=np.arange(len(y_test)),
            y_true=y_test, blobs=test_blobs, row_ids=test_ids, classes=classes),
    }

    report_stage(progress, "saving", train.epochs)
    versions = library_versions()
    saved = save_module(module=main.module, directory=Path(artifact_dir), metadata=json_ready({
        "model_family": MODEL_FAMILY, "spec_key": spec.key, "task_type": spec.task_type.value,
        "seed": train.seed, "privacy": main.privacy, "epsilon": main.privacy.get("epsilon"),
        "delta": main.privacy.get("delta"), "mapping": mapping.to_dict(),
        "classes": list(classes), "backbone": backbone_identity(pretrained=pretrained),
        "split": split.summary, "best_epoch": main.best_epoch, "device": main.device,
        "versions": versions,
    }))
    names = _metric_names(spec)
    return TrainingResult(
        metrics={name: metrics[name] for name in names},
        baseline={"name": "frozen_logistic",
                  "metrics": {n: reference_metrics["frozen_logistic"][n] for n in names},
                  "baselines": reference_metrics},
        nonprivate_metrics=twin_metrics and {n: twin_metrics[n] for n in names},
        privacy=main.privacy,
        fairness=audit,
        nonprivate_fairness=twin_audit,
        fairness_passed=all(a["passed"] for a in audit.values()),
        split=split.summary,
        history=main.history,
        device=main.device,
        seed=train.seed,
        artifact_path=saved.path,
        artifact_sha256=saved.sha256,
        versions=versions,
        predictions=prediction_table(row_ids=test_ids, y_true=y_test,
                                     probabilities=probabilities, classes=classes,
                                     groups=groups),
        task_type=spec.task_type.value,
        charts=json_ready(charts),
        notes=_notes(privacy=privacy, split=split, main=main, mapping=mapping,
                     trainable_blocks=trainable_blocks, twin_blocks=twin_blocks),
    )


def _metric_names(spec: ProblemSpec) -> tuple[str, ...]:
    named = tuple(name for name in spec.metrics if name in METRICS)
    return named or METRICS


# A private run releases nothing computed from the images but the classifier's weights.
PUBLIC = ("the pretrained backbone (a package's ImageNet weights)",
          "class names as the analyst declared them", "training settings",
          "image and person counts of the split")
CURATOR_ONLY = ("the frozen-feature logistic regression and majority references",
                "the non-private twin", "the per-group recall tables", "test metrics")


def _private_plan(*, privacy: PrivacyConfig, unit_column: str | None,
                  n_units: int) -> PrivatePlan:
    return PrivatePlan.for_units(
        privacy=privacy, unit_column=unit_column, n_units=n_units, n_histograms=0,
        n_categorical=0, max_rows=1, released={}, public=PUBLIC, curator_only=CURATOR_ONLY,
        examples_per_step=1,
        gradient=("one of the person's images per step, its gradient clipped to "
                  "max_grad_norm" if unit_column else
                  "each image's gradient clipped to max_grad_norm"))


def _notes(*, privacy: PrivacyConfig, split: Split, main: FittedModule,
           mapping: ColumnMapping, trainable_blocks: int, twin_blocks: int) -> list[str]:
    s = split.summary
    notes = [*privacy_notes(main.privacy),
             f"Stratified split by image: {s['train']} images for training, {s['val']} for "
             f"validation, {s['test']} for test, every class in the same share."
             if s["unit"] == "image" else
             f"Split by person: every person's images on one side ({s['train']} images "
             f"for training, {s['val']} for validation, {s['test']} for test).",
             "Backbone: EfficientNet-Lite0 pretrained on ImageNet (loaded from a package). "
             f"Fine-tuned: {_trained_part(trainable_blocks)}; every BatchNorm keeps its "
             "ImageNet statistics (frozen, folded into the convolution before it). The "
             "frozen layers below run once per image.",
             "References (for the curator's eyes, not released): logistic regression on the "
             "frozen pretrained features, and the majority class."]
    if privacy.enabled:
        notes.append(("Differential privacy is on, per person: persons are sampled, one of "
                      "their images per step. " if s["unit"] == "person" else
                      "Differential privacy is on; its unit is one image (no person column "
                      "was mapped: when several images show one part or person, the "
                      "guarantee is per image, not per part). ") + "Everything "
                     "data-dependent in the model (the fine-tuned layers) comes from DP-SGD; "
                     "the rest is the pretrained network's; the "
                     "class names are taken as declared by the analyst. The non-private twin "
                     f"fine-tunes {_trained_part(twin_blocks)} and also trains on "
                     f"{AUGMENT_VIEWS} augmented views per image.")
    else:
        notes.append(f"Trained on the images plus {AUGMENT_VIEWS} augmented views of each "
                     "(flips, 90-degree rotations, small crops, brightness).")
    if mapping.sensitive:
        notes.append("The group audit compares per-class recall across "
                     f"{', '.join(mapping.sensitive)}: a class missed more often on one line "
                     "or camera is an operational disparity.")
    notes.extend(main.notes)
    return notes


def _trained_part(trainable_blocks: int) -> str:
    blocks = ("" if not trainable_blocks else
              "the last MBConv block's 1x1 convolutions, " if trainable_blocks == 1 else
              f"the last {trainable_blocks} MBConv blocks' 1x1 convolutions, ")
    return f"{blocks}the head's 1x1 convolution and the classifier"


def prediction_table(*, row_ids: np.ndarray, y_true: np.ndarray | None,
                     probabilities: np.ndarray, classes: tuple[str, ...],
                     groups: pd.DataFrame | None = None) -> pd.DataFrame:
    """``row_id`` (the image path), ``y_true``, ``y_pred``, ``y_score`` (the top
    probability), one ``prob_<class>`` column per class, then the group columns."""
    return class_predictions(row_ids=row_ids, y_true=y_true, probabilities=probabilities,
                             classes=classes, groups=groups, prefix="group_")


# --- saving, loading, scoring --------------------------------------------------------------


def backbone_identity(*, pretrained: bool) -> dict:
    """Which backbone weights a model was trained on (a saved top only fits those)."""
    if not pretrained:
        return {"name": MODEL_NAME, "pretrained": False, "sha256": None}
    digest = hashlib.sha256(Path(pretrained_weights_path()).read_bytes()).hexdigest()
    return {"name": MODEL_NAME, "pretrained": True, "sha256": digest}


@dataclass(frozen=True)
class LoadedImageClassifier:
    trunk: Trunk
    top: ImageTop
    classes: tuple[str, ...]
    metadata: dict


def load(path: Path | str) -> LoadedImageClassifier:
    """A saved image classifier (its top, sha256 checked) on the backbone it was trained on
    (refused when the installed weights differ), eval mode, CPU."""
    state, metadata = load_state(path)
    identity = metadata["backbone"]
    pretrained = bool(identity.get("pretrained", True))
    if pretrained and backbone_identity(pretrained=True)["sha256"] != identity.get("sha256"):
        raise ValueError("the installed EfficientNet-Lite0 weights differ from the ones this "
                         "model was trained on")
    top = ImageTop.from_architecture(metadata["architecture"])
    top.load_state_dict(state)
    backbone = load_backbone(pretrained=pretrained)
    return LoadedImageClassifier(trunk=Trunk(backbone), top=top.eval(),
                                 classes=tuple(metadata["classes"]), metadata=metadata)


def _top_start(loaded: LoadedImageClassifier) -> int:
    """The block whose input the saved top reads."""
    return len(loaded.trunk.blocks) - len(loaded.top.blocks)


def predict(loaded: LoadedImageClassifier, frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions for every image of ``frame`` (same columns as training; the label is
    optional): ``row_id`` (the image path), ``y_pred``, ``y_score``, ``prob_<class>``."""
    mapping = ColumnMapping.from_dict(loaded.metadata["mapping"])
    path = mapping.role(IMAGE_ROLE)
    if path and path not in frame.columns and PATH_COLUMN in frame.columns:
        # Images read to score (read_image_archive(labelled=False)) keep their path as "file".
        frame = frame.rename(columns={PATH_COLUMN: path})
    has_label = bool(mapping.target) and mapping.target in frame.columns
    prepared = prepare(frame, mapping if has_label else ColumnMapping(
        target="", roles=mapping.roles), classes=loaded.classes)
    rows = np.arange(len(prepared.blobs))
    features = extract_features(loaded.trunk,
                                lambda part: batch_pixels(prepared.blobs, rows[part]),
                                n=len(rows), upto=_top_start(loaded))
    probabilities = predict_probabilities(loaded.top, features)
    return prediction_table(row_ids=prepared.row_ids, y_true=prepared.labels,
                            probabilities=probabilities, classes=loaded.classes)
