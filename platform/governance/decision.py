"""What a reviewer decides on, in one place: the primary metric against both references
(the baseline and the non-private twin), the epsilon spent of its target with the privacy
unit, each sensitive attribute's verdict, and the gates that block. The review page opens
with it, the review queue and the Models area list it, the compare view sets two side by
side. Every figure is read from the stored run, never recomputed."""

from __future__ import annotations

from dataclasses import dataclass

from audits import verdicts
from ingestion.codebook import Codebook
from training.models import ModelVersion
from training.result_display import metric_higher_is_better, metric_label
from verticals import registry


@dataclass(frozen=True)
class Decision:
    model_version: ModelVersion
    metric: str | None
    metric_label: str
    metric_value: float | None
    baseline_name: str
    baseline_value: float | None
    twin_value: float | None
    beats_baseline: bool | None
    private: bool
    epsilon: float | None
    target_epsilon: float | None
    delta: float | None
    privacy_unit: str
    verdict: verdicts.Verdict | None
    attributes: tuple[tuple[str, verdicts.Verdict], ...]
    gates: tuple[dict, ...]

    @property
    def failing_gates(self) -> list[dict]:
        return [g for g in self.gates if g["required"] and not g["passed"]]

    @property
    def promotable(self) -> bool:
        return not self.failing_gates


def privacy_unit(mapping: dict | None, privacy: dict | None = None) -> str:
    """Whose privacy the epsilon protects: as the run's privacy report states its unit
    (ml_core.spec.PrivacyUnit), else as the mapping says it (DESIGN: without a person
    column each row counts as a person, and every page says so)."""
    unit = (privacy or {}).get("unit")
    if isinstance(unit, dict) and unit.get("text"):
        return f"per {unit.get('name') or 'person'} ({unit['text']})"
    roles = dict((role, column) for role, column in (mapping or {}).get("roles") or [])
    for role in ("privacy_unit", "user", "student"):
        if roles.get(role):
            return f"per person (each {roles[role]} value)"
    return "per row (each row counts as one person)"


def decision_for(model_version: ModelVersion, *, with_gates: bool = True) -> Decision:
    from governance.registry import evaluate_gates

    run = model_version.run
    try:
        metric = registry.get_problem(run.vertical, run.problem).spec.primary_metric
    except registry.RegistryError:
        metric = None
    result = run.result or {}
    baseline = result.get("baseline") or {}
    value = (run.metrics or {}).get(metric) if metric else None
    reference = (baseline.get("metrics") or {}).get(metric) if metric else None
    beats = None
    if isinstance(value, int | float) and isinstance(reference, int | float):
        beats = value > reference if metric_higher_is_better(metric) else value < reference
    privacy = run.privacy or {}
    report = getattr(run, "fairness_report", None)
    body = report.report if report is not None else None
    shown = Codebook.of_run(run)
    return Decision(
        model_version=model_version, metric=metric,
        metric_label=metric_label(metric) if metric else "–", metric_value=value,
        baseline_name=str(baseline.get("name") or "baseline"), baseline_value=reference,
        twin_value=(result.get("nonprivate_metrics") or {}).get(metric) if metric else None,
        beats_baseline=beats, private=bool(privacy.get("enabled")),
        epsilon=privacy.get("epsilon"), target_epsilon=privacy.get("target_epsilon"),
        delta=privacy.get("delta"),
        privacy_unit=privacy_unit(run.dataset_version.mapping if run.dataset_version_id
                                  else None, privacy),
        verdict=verdicts.for_report(body) if report is not None else None,
        attributes=tuple((shown.column(name), verdicts.for_attribute(part)) for name, part in
                         (body or {}).items() if isinstance(part, dict)),
        gates=tuple(evaluate_gates(model_version)) if with_gates else (),
    )
