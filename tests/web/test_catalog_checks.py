"""The catalog's system check: a non-empty registry of well-formed problem specs."""

from __future__ import annotations

import dataclasses

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from catalog.checks import check_registry
from ml_core.spec import ColumnRole, FairnessPolicy, RoleHint, TaskType
from verticals import registry
from verticals.base import Vertical


def test_installed_verticals_pass(capsys):
    assert [m for m in check_registry() if m.level >= checks.ERROR] == []
    call_command("check", "--tag", "tessera")  # registered in CatalogConfig.ready()


def test_empty_registry_is_an_error(monkeypatch):
    monkeypatch.setattr(registry, "_VERTICALS", {})
    (message,) = check_registry()
    assert message.id == "catalog.E001" and message.level == checks.ERROR


def test_malformed_spec_is_reported(monkeypatch):
    _, problem = registry.all_problems()[0]
    spec = dataclasses.replace(
        problem.spec,
        key="Bad Key",
        hints=(RoleHint(role=ColumnRole.ID, names=("id",)),),
        primary_metric="nonsense",
        fairness=FairnessPolicy(min_disparate_impact_ratio=1.5, min_group_size=0),
    )
    broken = Vertical(key="broken", name="Broken", description="",
                      problems=(dataclasses.replace(problem, spec=spec, guide=""),))
    monkeypatch.setattr(registry, "_VERTICALS", {"broken": broken})
    messages = check_registry()
    text = " ".join(m.msg for m in messages)
    for fragment in ("not a lower-case identifier", "no column hint for the target role",
                     "primary metric", "min_disparate_impact_ratio", "min_group_size"):
        assert fragment in text, fragment
    assert any(m.id == "catalog.W001" for m in messages)  # no guide


def _only(monkeypatch, problem) -> list:
    monkeypatch.setattr(registry, "_VERTICALS", {"broken": Vertical(
        key="broken", name="Broken", description="", problems=(problem,))})
    return [m for m in check_registry() if m.level >= checks.ERROR]


def test_a_misspelt_model_family_fails_the_check(monkeypatch):
    problem = registry.get_problem("finance", "credit_risk")
    spec = dataclasses.replace(problem.spec, model_family="tabular_mpl")
    (message,) = _only(monkeypatch, dataclasses.replace(problem, spec=spec))
    assert message.id == "catalog.E005"
    assert "unknown model family 'tabular_mpl'" in message.msg
    assert "broken/credit_risk" in message.msg


def test_a_role_the_family_does_not_read_fails_manage_py_check(monkeypatch):
    # Credit risk mapped with a text column: the tabular family reads no text.
    problem = registry.get_problem("finance", "credit_risk")
    spec = dataclasses.replace(problem.spec, hints=(
        *problem.spec.hints, RoleHint(role=ColumnRole.TEXT, names=("notes",))))
    (message,) = _only(monkeypatch, dataclasses.replace(problem, spec=spec))
    assert message.id == "catalog.E006"
    assert "maps the role 'text', which the tabular_mlp family does not read" in message.msg
    with pytest.raises(SystemCheckError, match="catalog.E006"):
        call_command("check", "--tag", "tessera")


def test_a_task_type_or_options_the_family_does_not_take_fail_the_check(monkeypatch):
    problem = registry.get_problem("finance", "credit_risk")
    spec = dataclasses.replace(problem.spec, task_type=TaskType.FORECASTING,
                               family_options=FairnessPolicy())
    texts = [m.msg for m in _only(monkeypatch, dataclasses.replace(problem, spec=spec))]
    assert any("trains binary_classification, not forecasting" in t for t in texts)
    assert any("family_options is FairnessPolicy" in t for t in texts)


def test_a_sample_mapping_role_the_family_does_not_read_fails_the_check(monkeypatch):
    problem = registry.get_problem("retail", "demand_forecast")
    mapping = dataclasses.replace(problem.sample_mapping, features=("price",))
    (message,) = _only(monkeypatch, dataclasses.replace(problem, sample_mapping=mapping))
    assert "maps the role 'feature', which the forecaster family does not read" in message.msg
