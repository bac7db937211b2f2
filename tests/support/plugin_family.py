"""A model family from outside ml_core, as a third party would add one: one module, one
registration. A small private MLP of its own width (its options), trained by ml_core's
tabular run and saved in ml_core.artifacts' format, so the platform can serve it.

Importing this module registers the family (tests/platform/test_plugin_family.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ml_core.families import MetricDeclaration, ModelFamily, Supports, register_family
from ml_core.spec import ColumnRole, TaskType

NAME = "test_narrow_mlp"


@dataclass(frozen=True)
class NarrowOptions:
    hidden_sizes: tuple[int, ...] = (4,)


@register_family
class NarrowMLPFamily(ModelFamily):
    name = NAME
    task_types = (TaskType.BINARY_CLASSIFICATION,)
    required_roles = (ColumnRole.TARGET.value, ColumnRole.FEATURE.value)
    optional_roles = (ColumnRole.ID.value,)
    options_type = NarrowOptions
    metrics = (MetricDeclaration("roc_auc", higher_is_better=True, naive_level=0.5),
               MetricDeclaration("accuracy", higher_is_better=True))
    primary_metric = "roc_auc"
    chart_kinds = ("precision_recall",)
    supports = Supports(online_prediction=True, batch_scoring=True)

    def _run(self, *, spec, train=None, **inputs: Any):
        from ml_core.pipeline import run_tabular

        train = dataclasses.replace(train or spec.train,
                                    hidden_sizes=self.options(spec).hidden_sizes)
        return run_tabular(spec=spec, train=train, **inputs)

    def load(self, path):
        from ml_core.artifacts import load_model

        return load_model(path)

    def predict(self, loaded, frame):
        from ml_core.artifacts import predict_decisions

        return predict_decisions(loaded, frame)
