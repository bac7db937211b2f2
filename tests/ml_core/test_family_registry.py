"""Model families are registered plug-ins (ml_core.families.base): every problem's family is
found by name, declarations are checked at registration, and what families declare agrees
with ml_core's own metric directions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from ml_core import metrics
from ml_core.families import (
    FamilyError,
    MetricDeclaration,
    ModelFamily,
    Supports,
    all_families,
    get_family,
    register_family,
)
from ml_core.families.base import unregister_family
from ml_core.spec import DEFAULT_MODEL_FAMILY, ColumnRole, ProblemSpec, RoleHint, TaskType
from verticals.registry import all_problems

BUILT_IN = {"tabular_mlp", "text_encoder", "forecaster", "recommender", "knowledge_tracing",
            "next_exercise", "sequence_regressor"}


def test_every_built_in_family_registers_itself() -> None:
    assert BUILT_IN <= {family.name for family in all_families()}
    assert get_family(DEFAULT_MODEL_FAMILY).name == ProblemSpec.model_family == "tabular_mlp"


def test_every_registered_problem_names_a_family_that_trains_it() -> None:
    for vertical, problem in all_problems():
        family = get_family(problem.spec.model_family)
        where = f"{vertical.key}/{problem.key}"
        assert problem.spec.task_type in family.task_types, where
        for name in problem.spec.metrics:
            assert family.metric(name) is not None, (where, name)
        for hint in problem.spec.hints:
            assert family.reads(hint.role), (where, hint.role)
        for role in family.required_roles:
            assert any(str(h.role) == role for h in problem.spec.hints) or role in (
                ColumnRole.FEATURE.value, ColumnRole.TARGET.value), (where, role)


def test_declared_metric_directions_agree_with_ml_core_metrics() -> None:
    for family in all_families():
        assert family.metric(family.primary_metric) is not None, family.name
        for declared in family.metrics:
            if declared.higher_is_better is None:  # a count: no direction to agree on
                continue
            assert declared.higher_is_better == metrics.higher_is_better(declared.name), (
                family.name, declared.name)
        assert family.metric(family.primary_metric).higher_is_better is not None


def test_an_unknown_family_is_a_clear_error() -> None:
    with pytest.raises(FamilyError, match="unknown model family 'tabular_mpl'; known: .*"
                                          "tabular_mlp"):
        get_family("tabular_mpl")


@dataclass(frozen=True)
class _Options:
    width: int = 2


def _family(name: str, **declared) -> type[ModelFamily]:
    attributes = {"name": name, "task_types": (TaskType.BINARY_CLASSIFICATION,),
                  "metrics": (MetricDeclaration("roc_auc", True, 0.5),),
                  "primary_metric": "roc_auc", "chart_kinds": ("precision_recall",),
                  **declared}
    return type("Family_" + name, (ModelFamily,), attributes)


def test_registration_refuses_a_taken_name_and_bad_declarations() -> None:
    first = _family("test_registry_a")
    try:
        assert register_family(first) is first
        assert register_family(first) is first  # the same class again: a no-op
        with pytest.raises(FamilyError, match="already registered"):
            register_family(type("Other", (first,), {}))
    finally:
        unregister_family("test_registry_a")
    with pytest.raises(FamilyError, match="primary metric 'pr_auc' is not one of"):
        register_family(_family("test_registry_b", primary_metric="pr_auc"))
    with pytest.raises(FamilyError, match="not a frozen dataclass"):
        register_family(_family("test_registry_c", options_type=dict))
    with pytest.raises(FamilyError, match="declares no chart_kinds"):
        register_family(_family("test_registry_d", chart_kinds=()))
    assert "test_registry_b" not in {family.name for family in all_families()}


def test_roles_options_and_supports_are_read_from_the_declaration() -> None:
    family = _family("test_registry_e", required_roles=("target", "feature"),
                     optional_roles=("id",), options_type=_Options,
                     supports=Supports(online_prediction=True))()
    assert family.reads(ColumnRole.FEATURE) and family.requires("feature")
    assert family.reads("sensitive") and family.reads(ColumnRole.EXCLUDE)  # every family
    assert not family.reads(ColumnRole.TEXT) and not family.requires("id")
    spec = ProblemSpec(key="k", name="K", description="",
                       task_type=TaskType.BINARY_CLASSIFICATION,
                       hints=(RoleHint(ColumnRole.TARGET, ("y",), required=True),))
    assert family.options(spec) == _Options()
    assert family.options(dataclasses.replace(spec, family_options=_Options(5))) == _Options(5)
    assert family.supports.online_prediction and not family.supports.privacy_audit
    with pytest.raises(NotImplementedError):
        family.load("nowhere")
