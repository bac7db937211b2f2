"""Seed-study helper: a saved text model and its TF-IDF baseline scored on rows neither
saw (``scripts/text_seed_study.py`` and the contract battery use it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ml_core.families.text.family import (
    _labelled_texts,
    _split_positions,
    load,
    predict,
    text_metrics,
    tfidf_baseline,
)
from ml_core.runner import resolve_inputs
from ml_core.spec import ColumnMapping, ProblemSpec, TrainConfig


def compare_on_fresh_rows(
    path: Path | str, *, frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec,
    train: TrainConfig | None = None, fresh: pd.DataFrame,
) -> dict:
    """The model saved at ``path`` and its TF-IDF baseline, scored on rows neither saw.

    ``frame`` and ``train`` are what the model was trained with: the baseline is refitted
    as :func:`run` fits it (same split, same training rows, same seed). The model scores
    ``fresh`` through :func:`load` and :func:`predict`, the product's own path. Returns
    ``{"rows": n, "model": text_metrics, "baseline": text_metrics}`` over ``fresh``'s
    labelled rows (their labels must be among the trained classes).
    """
    frame, _, train = resolve_inputs(frame=frame, spec=spec, privacy=None, train=train)
    _, _, classes, y, texts = _labelled_texts(frame, mapping, spec)
    loaded = load(path)
    if list(loaded.metadata["classes"]) != classes:
        raise ValueError("the model at path was not trained on frame's classes")
    fit, _, _, _ = _split_positions(y, train)
    _, rows, fresh_classes, fresh_y, fresh_texts = _labelled_texts(fresh, mapping, spec)
    if not set(fresh_classes) <= set(classes):
        raise ValueError(f"fresh labels {sorted(set(fresh_classes) - set(classes))} were "
                         "never trained on")
    index_of = {label: i for i, label in enumerate(classes)}
    y_true = np.array([index_of[fresh_classes[i]] for i in fresh_y], dtype=np.int64)
    model_pred = predict(loaded, rows)["y_pred"].map(index_of).to_numpy(dtype=np.int64)
    baseline_pred = tfidf_baseline(texts_train=[texts[i] for i in fit], y_train=y[fit],
                                   texts_eval=fresh_texts, seed=train.seed)
    return {"rows": int(len(rows)),
            "model": text_metrics(y_true, model_pred, len(classes)),
            "baseline": text_metrics(y_true, baseline_pred, len(classes))}
