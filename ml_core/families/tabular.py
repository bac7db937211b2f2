"""The ``tabular_mlp`` family: binary classification of table rows with a private MLP.

Its run is :func:`ml_core.pipeline.run_tabular` (training in :mod:`ml_core.trainer`); its
artifact is :mod:`ml_core.artifacts`' (weights, fitted encoder, metadata), the format the
platform's scoring, privacy audit and mitigation read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ml_core.families.base import MetricDeclaration, ModelFamily, Supports, register_family
from ml_core.spec import ColumnRole, TaskType


def binary_metric_declarations() -> tuple[MetricDeclaration, ...]:
    """The metrics :func:`ml_core.metrics.binary_metrics` computes, declared for a family
    that scores binary outcomes. Naive levels: a constant score (ROC AUC 0.5, KS 0, recall
    at 90 % precision 0); the others depend on the positive rate."""
    return (
        MetricDeclaration("roc_auc", higher_is_better=True, naive_level=0.5),
        MetricDeclaration("pr_auc", higher_is_better=True),
        MetricDeclaration("accuracy", higher_is_better=True),
        MetricDeclaration("f1", higher_is_better=True),
        MetricDeclaration("brier", higher_is_better=False),
        MetricDeclaration("ks", higher_is_better=True, naive_level=0.0),
        MetricDeclaration("recall_at_90_precision", higher_is_better=True, naive_level=0.0),
    )


@register_family
class TabularMLPFamily(ModelFamily):
    name = "tabular_mlp"
    task_types = (TaskType.BINARY_CLASSIFICATION,)
    # Features are required: with none mapped, every column without another role is one.
    required_roles = (ColumnRole.TARGET.value, ColumnRole.FEATURE.value)
    optional_roles = (ColumnRole.ID.value,)
    metrics = binary_metric_declarations()
    primary_metric = "roc_auc"
    chart_kinds = ("precision_recall",)
    supports = Supports(online_prediction=True, batch_scoring=True, privacy_audit=True,
                        mitigation=True, labelled_test_file=True)
    artifact_public = frozenset({
        "feature_columns", "schema_fingerprint", "positive_label", "target_rule",
        "train_config", "split", "numeric", "categorical", "asinh", "column_types", "hashed"})
    artifact_private = {
        "medians": "imputation values and centres", "means": "imputation values and centres",
        "scales": "scales", "with_missing_indicator": "missing-value indicators",
        "levels": "category vocabularies", "feature_names": "category vocabularies",
        "threshold": "decision threshold", "whitening": "numeric decorrelation"}

    def _run(self, **inputs: Any):
        from ml_core.pipeline import run_tabular

        return run_tabular(**inputs)

    def load(self, path: Path | str):
        from ml_core.artifacts import load_model

        return load_model(path)

    def predict(self, loaded: Any, frame: pd.DataFrame) -> pd.DataFrame:
        """``score`` (positive-class probability) and ``prediction`` at the saved threshold."""
        from ml_core.artifacts import predict_decisions

        return predict_decisions(loaded, frame)
