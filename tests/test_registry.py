"""Verticals register themselves through their AppConfig.ready(); the registry refuses clashes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.apps import apps

from ml_core.spec import ColumnRole, ProblemSpec, RoleHint, TaskType
from verticals import registry
from verticals.base import Problem, Vertical


@pytest.fixture
def isolated_registry() -> Iterator[None]:
    """Lets a test register throw-away verticals without leaking them into other tests."""
    saved = dict(registry._VERTICALS)
    try:
        yield
    finally:
        registry._VERTICALS.clear()
        registry._VERTICALS.update(saved)


def make_problem(key: str) -> Problem:
    spec = ProblemSpec(
        key=key, name=key.title(), description="", task_type=TaskType.BINARY_CLASSIFICATION,
        hints=(RoleHint(role=ColumnRole.TARGET, names=("y",), required=True),),
    )
    finance = registry.get_problem("finance", "credit_risk")
    return Problem(spec=spec, sample_data=finance.sample_data,
                   sample_mapping=finance.sample_mapping)


def test_finance_app_is_installed_and_registered_by_ready() -> None:
    config = apps.get_app_config("finance")
    assert type(config).__name__ == "FinanceConfig", "Django picked a plain AppConfig"
    problem = registry.get_problem("finance", "credit_risk")
    assert problem.spec.name == "Credit default risk"
    assert registry.get_vertical("finance").name == "Finance"
    assert ("finance", "credit_risk") in [(v.key, p.key) for v, p in registry.all_problems()]


def test_ready_twice_registers_once() -> None:
    before = registry.verticals()
    apps.get_app_config("finance").ready()
    assert registry.verticals() == before


def test_unknown_vertical_or_problem_raises() -> None:
    with pytest.raises(registry.RegistryError):
        registry.get_vertical("astrology")
    with pytest.raises(registry.RegistryError):
        registry.get_problem("finance", "horoscope")


@pytest.mark.usefixtures("isolated_registry")
def test_another_vertical_with_the_same_key_is_refused() -> None:
    impostor = Vertical(key="finance", name="Other finance", description="",
                        problems=(make_problem("scoring"),))
    with pytest.raises(registry.RegistryError, match="already registered"):
        registry.register(impostor)
    assert registry.get_vertical("finance").name == "Finance"


@pytest.mark.usefixtures("isolated_registry")
def test_duplicate_problem_keys_are_refused() -> None:
    twice = Vertical(key="twice", name="Twice", description="",
                     problems=(make_problem("same"), make_problem("same")))
    with pytest.raises(registry.RegistryError, match="twice"):
        registry.register(twice)
    with pytest.raises(registry.RegistryError):
        registry.get_vertical("twice")


@pytest.mark.usefixtures("isolated_registry")
def test_a_new_vertical_is_listed() -> None:
    registry.register(Vertical(key="zz_test", name="Zz test", description="",
                               problems=(make_problem("one"),)))
    assert registry.get_problem("zz_test", "one").spec.key == "one"
    assert [v.key for v in registry.verticals()][-1] == "zz_test"
