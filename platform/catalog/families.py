"""Which model family trains a problem or served a model: the platform reads the family's
declarations (roles, supports, chart kinds) here and never compares family names."""

from __future__ import annotations

from ml_core.families import ModelFamily, get_family
from ml_core.spec import DEFAULT_MODEL_FAMILY, ProblemSpec
from verticals.registry import get_problem


def family_of(spec: ProblemSpec | None) -> ModelFamily:
    """The family of ``spec``'s problem; without a problem, the default (tabular) family."""
    return get_family(spec.model_family if spec is not None else DEFAULT_MODEL_FAMILY)


def family_of_model(model_version) -> ModelFamily:
    """The family that trained ``model_version`` (a training.models.ModelVersion)."""
    return family_of(get_problem(model_version.vertical, model_version.problem).spec)
