"""Task families beyond tabular binary classification.

Each family module exposes ``run(*, frame, mapping, spec, privacy, train, artifact_dir,
progress, should_stop, checkpoint_dir) -> ml_core.pipeline.TrainingResult``, with the same
contract as :func:`ml_core.pipeline.run_training`: it checkpoints every epoch into
``checkpoint_dir`` and resumes from there (:mod:`ml_core.checkpoints`). Modules are
imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from types import ModuleType

# model_family -> module under ml_core.families
FAMILIES: dict[str, str] = {
    "text_encoder": "text",
    "forecaster": "forecasting",
    "recommender": "recommendation",
    "knowledge_tracing": "knowledge_tracing",
    "next_exercise": "knowledge_tracing",
    "sequence_regressor": "sequence_regression",
    "image_classifier": "image",
}


def family_module(model_family: str) -> ModuleType:
    """The module that implements ``model_family``."""
    try:
        module_name = FAMILIES[model_family]
    except KeyError:
        raise ValueError(f"unknown model family {model_family!r}; known: "
                         f"tabular_mlp, {', '.join(sorted(FAMILIES))}") from None
    return import_module(f"ml_core.families.{module_name}")


def runner_for(model_family: str) -> Callable:
    """The ``run`` function of ``model_family``'s module."""
    module = family_module(model_family)
    if model_family == "next_exercise":
        return module.run_next_exercise
    return module.run


def validator_for(model_family: str) -> Callable:
    """The family's task-specific ``validate(frame, mapping, spec)``."""
    return family_module(model_family).validate
