"""The catalog's system check: a non-empty registry of well-formed problem specs."""

from __future__ import annotations

import dataclasses

from django.core import checks
from django.core.management import call_command

from catalog.checks import check_registry
from ml_core.spec import ColumnRole, FairnessPolicy, RoleHint
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
