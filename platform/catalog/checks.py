"""System checks on the vertical registry: at least one problem exists, and every problem
declares a spec the platform can use. Run by ``manage.py check`` and on server start."""

from __future__ import annotations

import re

from django.core import checks

from ml_core.spec import ColumnRole, ProblemSpec, TaskType
from verticals import registry

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def _spec_problems(spec: object, where: str) -> list[str]:
    if not isinstance(spec, ProblemSpec):
        return [f"{where}: spec is {type(spec).__name__}, not ml_core.spec.ProblemSpec"]
    found: list[str] = []
    if not _KEY.match(spec.key or ""):
        found.append(f"{where}: key {spec.key!r} is not a lower-case identifier")
    if not spec.name.strip():
        found.append(f"{where}: name is empty")
    if not isinstance(spec.task_type, TaskType):
        found.append(f"{where}: task_type {spec.task_type!r} is not a TaskType")
    if not any(h.role == ColumnRole.TARGET for h in spec.hints):
        found.append(f"{where}: no column hint for the target role")
    if not spec.metrics:
        found.append(f"{where}: declares no metrics")
    elif spec.primary_metric not in spec.metrics:
        found.append(f"{where}: primary metric {spec.primary_metric!r} not in its metrics")
    if not spec.privacy.target_epsilon > 0:
        found.append(f"{where}: default target epsilon must be > 0")
    if spec.privacy.delta is not None and not 0 < spec.privacy.delta < 1:
        found.append(f"{where}: delta must be in (0, 1)")
    if not spec.privacy.max_grad_norm > 0:
        found.append(f"{where}: max_grad_norm must be > 0")
    policy = spec.fairness
    if not 0 < policy.min_disparate_impact_ratio <= 1:
        found.append(f"{where}: min_disparate_impact_ratio must be in (0, 1]")
    if not 0 <= policy.max_demographic_parity_difference <= 1:
        found.append(f"{where}: max_demographic_parity_difference must be in [0, 1]")
    if not 0 <= policy.max_equalized_odds_difference <= 1:
        found.append(f"{where}: max_equalized_odds_difference must be in [0, 1]")
    if policy.min_group_size < 1:
        found.append(f"{where}: min_group_size must be >= 1")
    for band in spec.banding:
        if list(band.edges) != sorted(set(band.edges)) or not band.edges:
            found.append(f"{where}: banding edges for {band.column_hint!r} must be increasing")
    if spec.train.epochs < 1 or spec.train.batch_size < 1 or not spec.train.learning_rate > 0:
        found.append(f"{where}: train defaults need epochs, batch size and learning rate > 0")
    if not 0 < spec.train.test_fraction + spec.train.val_fraction < 1:
        found.append(f"{where}: test and validation fractions must leave training rows")
    if spec.min_rows < 1:
        found.append(f"{where}: min_rows must be >= 1")
    return found


def check_registry(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    problems = registry.all_problems()
    if not problems:
        return [checks.Error(
            "No problem is registered: the catalog would be empty.",
            hint="Add a vertical app to INSTALLED_APPS whose AppConfig.ready() calls "
                 "verticals.registry.register().",
            id="catalog.E001",
        )]
    messages: list[checks.CheckMessage] = []
    for vertical, problem in problems:
        where = f"{vertical.key}/{problem.key}"
        if not _KEY.match(vertical.key or ""):
            messages.append(checks.Error(f"vertical key {vertical.key!r} is not a lower-case "
                                         "identifier", id="catalog.E002"))
        for text in _spec_problems(problem.spec, where):
            messages.append(checks.Error(text, id="catalog.E003"))
        if not callable(problem.sample_data):
            messages.append(checks.Error(f"{where}: sample_data is not callable",
                                         id="catalog.E004"))
        if not problem.guide.strip():
            messages.append(checks.Warning(f"{where}: has no guide for analysts",
                                           id="catalog.W001"))
    return messages
