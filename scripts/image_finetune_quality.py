"""Private fine-tuning of the image family measured on a folder of class folders (NEU
surface defects), for docs/images.md: the private model at several budgets and numbers of
fine-tuned blocks, the non-private twin, the references, and an imbalanced variant (one
class over 70 %) where the non-private model is compared with frozen features plus logistic
regression, per-class recall shown.

    .venv/bin/python scripts/image_finetune_quality.py ../shared/data/images/neu_surface \\
        --cache /tmp/image-features --epsilons 8 3 1 --blocks 1 0 --out /tmp/neu-ft.json

It uses the family's own pieces (split, extraction and its cache, :func:`fit`, the
references); the activations are extracted once (at the earliest cut asked for) and carried
through the frozen blocks to each later cut.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ml_core.families.image import family, report  # noqa: E402
from ml_core.families.image.backbone import Trunk, first_trainable, load_backbone  # noqa: E402
from ml_core.families.image.columns import IMAGE_BYTES_COLUMN  # noqa: E402
from ml_core.families.image.data import Split, prepare, stratified_split  # noqa: E402
from ml_core.pipeline import resolve_inputs  # noqa: E402
from ml_core.spec import ColumnMapping  # noqa: E402
from scripts.image_quality import emit, folder_frame  # noqa: E402
from verticals.manufacturing.vertical import VISUAL_INSPECTION  # noqa: E402

# Imbalanced variant: every image of the majority class, this many of each other class.
MINORITY_IMAGES = 20


def _log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def _progress(*, stage: str, epoch: int, val_metric=None, epsilon=None, **_) -> None:  # noqa: ANN001, ANN003
    _log(stage, "epoch", epoch, "val", val_metric, "epsilon", epsilon)


def _evaluate(module, inputs, labels, classes) -> dict:
    predicted = family.predict_probabilities(module, inputs).argmax(axis=1)
    metrics = report.classification_metrics(labels, predicted, len(classes))
    recall = report.per_class(labels, predicted, classes)["recall"]
    return {**metrics, "recall": dict(zip(classes, recall, strict=True))}


def _fit(*, backbone, features, labels, split: Split, classes, train, privacy, blocks,
         rows=None, extra=None):
    """One fit of the family's top on ``rows`` (default: the training split), plus ``extra``
    (inputs, labels) such as the augmented views; returns its test figures and time."""
    rows = split.train if rows is None else rows
    inputs, y = features[rows], labels[rows]
    if extra is not None:
        inputs, y = torch.cat([inputs, extra[0]]), np.concatenate([y, extra[1]])
    started = time.perf_counter()
    fitted = family.fit(backbone=backbone, inputs=inputs, labels=y,
                        val_inputs=features[split.val], val_labels=labels[split.val],
                        n_classes=len(classes), train=train, privacy=privacy,
                        stage="training", progress=_progress, should_stop=None,
                        checkpoint_dir=None, trainable_blocks=blocks)
    seconds = time.perf_counter() - started
    out = _evaluate(fitted.module, features[split.test], labels[split.test], classes)
    out.update(seconds=round(seconds, 1), epochs=len(fitted.history),
               best_epoch=fitted.best_epoch)
    if fitted.privacy.get("enabled"):
        out["privacy"] = {k: fitted.privacy.get(k) for k in (
            "epsilon", "target_epsilon", "delta", "noise_multiplier", "sample_rate", "steps")}
    return out


def _imbalanced_split(labels: np.ndarray, majority: int, seed: int, train,
                      minority: int) -> tuple:
    rng = np.random.default_rng(seed)
    keep = np.concatenate([np.flatnonzero(labels == k) if k == majority else
                           rng.choice(np.flatnonzero(labels == k), minority,
                                      replace=False)
                           for k in range(labels.max() + 1)])
    keep = np.sort(keep)
    inner = stratified_split(labels[keep], replace(train, seed=seed))
    return keep, Split(train=keep[inner.train], val=keep[inner.val], test=keep[inner.test],
                       summary=inner.summary)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[8.0, 3.0, 1.0])
    parser.add_argument("--blocks", type=int, nargs="*", default=[family.TRAINABLE_BLOCKS])
    parser.add_argument("--no-twin", action="store_true")
    parser.add_argument("--imbalanced-seeds", type=int, nargs="*", default=[])
    parser.add_argument("--minority", type=int, default=MINORITY_IMAGES)
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the problem's epochs (the private budget is spread "
                             "over the steps taken either way)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    mapping = ColumnMapping(target="label",
                            roles=(("image", "file"), ("image_data", IMAGE_BYTES_COLUMN)))
    spec = VISUAL_INSPECTION
    frame, privacy, train = resolve_inputs(frame=folder_frame(args.folder), spec=spec,
                                           privacy=replace(spec.privacy, enabled=True),
                                           train=None)
    if args.epochs:
        train = replace(train, epochs=args.epochs)
    prepared = prepare(frame, mapping)
    labels, classes = prepared.labels, prepared.classes
    split = stratified_split(labels, train)
    backbone = load_backbone()
    trunk = Trunk(backbone)
    identity = family.backbone_identity(pretrained=True)
    earliest = min(first_trainable(backbone, b) for b in args.blocks)
    started = time.perf_counter()
    cached = family.extract(trunk, prepared, augment_rows=split.train,
                            views=family.AUGMENT_VIEWS, seed=train.seed, upto=earliest,
                            cache_dir=args.cache, backbone=identity)
    body: dict = {"images": len(labels), "split": split.summary, "train": {
        "epochs": train.epochs, "batch_size": train.batch_size,
        "learning_rate": train.learning_rate, "patience": train.patience},
        "threads": torch.get_num_threads(),
        "extract_seconds": round(time.perf_counter() - started, 1), "runs": []}
    _log("features", tuple(cached.rows.shape), body["extract_seconds"], "s")
    pooled = family.pooled_features(backbone, family.advance(
        trunk, cached.rows, earliest, len(trunk.blocks)), trainable_blocks=0)
    references = family.reference_predictions(pooled=pooled.numpy(), labels=labels,
                                              split=split, n_classes=len(classes))
    body["references"] = {name: report.classification_metrics(
        labels[split.test], predicted, len(classes)) for name, predicted in references.items()}
    _log("references", body["references"])

    for blocks in args.blocks:
        upto = first_trainable(backbone, blocks)
        rows = family.advance(trunk, cached.rows, earliest, upto)
        common = {"backbone": backbone, "features": rows, "labels": labels, "split": split,
                  "classes": classes, "train": train, "blocks": blocks}
        for epsilon in args.epsilons:
            result = _fit(privacy=replace(privacy, target_epsilon=epsilon), **common)
            body["runs"].append({"blocks": blocks, "epsilon_target": epsilon, **result})
            _log("blocks", blocks, "epsilon", epsilon, result)
        if not args.no_twin:
            views = family.advance(trunk, cached.views, earliest, upto)
            result = _fit(privacy=None, extra=(views, labels[cached.view_rows]), **common)
            body["runs"].append({"blocks": blocks, "epsilon_target": None, **result})
            _log("blocks", blocks, "twin", result)

    for seed in args.imbalanced_seeds:
        blocks = args.blocks[0]
        rows = family.advance(trunk, cached.rows, earliest, first_trainable(backbone, blocks))
        majority = seed % len(classes)
        keep, sub = _imbalanced_split(labels, majority, seed, train, args.minority)
        probe = family.reference_predictions(pooled=pooled.numpy(), labels=labels, split=sub,
                                             n_classes=len(classes))["frozen_logistic"]
        y_test = labels[sub.test]
        result = _fit(backbone=backbone, features=rows, labels=labels, split=sub,
                      classes=classes, train=train, privacy=None, blocks=blocks)
        entry = {"seed": seed, "majority": classes[majority],
                 "majority_share": round(float(np.mean(labels[keep] == majority)), 3),
                 "images": len(keep), "split": sub.summary, "finetuned": result,
                 "frozen_logistic": {
                     **report.classification_metrics(y_test, probe, len(classes)),
                     "recall": dict(zip(classes, report.per_class(y_test, probe, classes)[
                         "recall"], strict=True))}}
        body.setdefault("imbalanced", []).append(entry)
        _log("imbalanced", entry)

    emit(body, args.out)


if __name__ == "__main__":
    main()
