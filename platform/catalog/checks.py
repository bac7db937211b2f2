"""System checks on the vertical registry: at least one problem exists, every problem
declares a spec the platform can use, and its model family is registered and reads the
roles the problem maps. Run by ``manage.py check`` and on server start."""

from __future__ import annotations

import re

from django.core import checks

from ml_core.families import FamilyError, ModelFamily, get_family
from ml_core.spec import ColumnMapping, ColumnRole, ProblemSpec, TaskType
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


def _mapped_roles(mapping: ColumnMapping) -> set[str]:
    """The roles a sample mapping gives a column (the tabular fields and the task roles)."""
    roles = {role for role, _ in mapping.roles}
    for role, present in ((ColumnRole.TARGET, mapping.target), (ColumnRole.ID, mapping.id),
                          (ColumnRole.FEATURE, mapping.features),
                          (ColumnRole.SENSITIVE, mapping.sensitive),
                          (ColumnRole.EXCLUDE, mapping.exclude)):
        if present:
            roles.add(role.value)
    return roles


def _family_problems(spec: ProblemSpec, mapping: ColumnMapping, where: str,
                     family: ModelFamily) -> list[str]:
    """What ``spec`` asks of ``family`` that the family does not declare."""
    found: list[str] = []
    if spec.task_type not in family.task_types:
        found.append(f"{where}: the {family.name} family trains "
                     f"{', '.join(t.value for t in family.task_types)}, "
                     f"not {getattr(spec.task_type, 'value', spec.task_type)}")
    hinted = {str(getattr(h.role, "value", h.role)) for h in spec.hints}
    for role in sorted(hinted | _mapped_roles(mapping)):
        if not family.reads(role):
            found.append(f"{where}: maps the role {role!r}, which the {family.name} family "
                         f"does not read (it reads {', '.join(sorted(family.roles()))})")
    options = spec.family_options
    if options is not None and (family.options_type is None
                                or not isinstance(options, family.options_type)):
        expected = family.options_type.__name__ if family.options_type else "no options"
        found.append(f"{where}: family_options is {type(options).__name__}; the "
                     f"{family.name} family takes {expected}")
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
        if isinstance(problem.spec, ProblemSpec):
            messages.extend(_family_messages(problem.spec, problem.sample_mapping, where))
        if not callable(problem.sample_data):
            messages.append(checks.Error(f"{where}: sample_data is not callable",
                                         id="catalog.E004"))
        if not problem.guide.strip():
            messages.append(checks.Warning(f"{where}: has no guide for analysts",
                                           id="catalog.W001"))
    return messages


def _family_messages(spec: ProblemSpec, mapping: ColumnMapping, where: str
                     ) -> list[checks.CheckMessage]:
    try:
        family = get_family(spec.model_family)
    except FamilyError as exc:
        return [checks.Error(f"{where}: {exc}", id="catalog.E005",
                             hint="Name a registered family in the spec's model_family, or "
                                  "register the family (ml_core.families.register_family) "
                                  "in a module the app imports.")]
    return [checks.Error(text, id="catalog.E006")
            for text in _family_problems(spec, mapping, where, family)]
