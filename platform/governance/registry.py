"""The model registry: registry fields, promotion gates, champion, history.

Per problem and organisation one version at a time is ``champion``. A model becomes
champion only through :func:`promote`, which evaluates the gates (:func:`evaluate_gates`):
fairness passed, epsilon at or under the limit, utility at or above the baseline and not
worse than the champion by more than a tolerance, and a reviewer's sign-off. A failing gate
blocks promotion and says which and by how much; an admin may override with a written
reason, which is logged. Every change of standing is a PromotionEvent (append-only).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts.models import REVIEWER_ROLES, Role
from accounts.permissions import require_role
from accounts.scoping import member_of
from audits import figures, verdicts
from audits.models import FairnessReport, Review
from audits.services import log_action
from governance.models import GatePolicy, PromotionEvent
from ingestion.codebook import Codebook
from ml_core.spec import ProblemSpec
from training.models import ModelVersion
from verticals.registry import get_problem

# Metrics where a smaller value is better; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"brier", "rmse", "mae", "mape", "smape", "wape", "log_loss",
                             "loss", "mse", "rmse_cycles"})
GATE_NAMES = ("fairness", "privacy", "baseline", "champion", "signoff")


class GateFailure(ValueError):
    """Promotion blocked: ``failures`` lists the gates that failed, with by how much."""

    def __init__(self, failures: list[dict]):
        self.failures = failures
        super().__init__("promotion blocked: " + "; ".join(f["message"] for f in failures))


# --- gates ------------------------------------------------------------------------------


def _spec(vertical: str, problem: str) -> ProblemSpec:
    return get_problem(vertical, problem).spec


def gate_defaults(spec: ProblemSpec) -> dict:
    """The vertical's defaults: its privacy target is the epsilon limit, and privacy is
    required only where the problem trains privately by default, so that a model trained
    with the problem's own defaults can pass its own gates (machine sensor data)."""
    return {"require_fairness": True, "require_privacy": bool(spec.privacy.enabled),
            "max_epsilon": float(spec.privacy.target_epsilon), "require_baseline": True,
            "champion_tolerance": 0.02, "require_signoff": True}


def gate_policy_for(*, organisation, vertical: str, problem: str) -> GatePolicy:
    policy, _ = GatePolicy.objects.get_or_create(
        organisation=organisation, vertical=vertical, problem=problem,
        defaults=gate_defaults(_spec(vertical, problem)),
    )
    return policy


EDITABLE_GATE_FIELDS = ("require_fairness", "require_privacy", "max_epsilon", "require_baseline",
                        "champion_tolerance", "require_signoff")


def update_gate_policy(*, user, vertical: str, problem: str, **changes) -> GatePolicy:
    """Admins only: change the gates of one problem in their organisation (logged)."""
    membership = require_role(user, Role.ADMIN)
    unknown = sorted(set(changes) - set(EDITABLE_GATE_FIELDS))
    if unknown:
        raise ValueError(f"unknown gate settings {unknown}")
    policy = gate_policy_for(organisation=membership.organisation, vertical=vertical,
                             problem=problem)
    before = {name: getattr(policy, name) for name in EDITABLE_GATE_FIELDS}
    for name, value in changes.items():
        if name in ("max_epsilon", "champion_tolerance"):
            value = float(value)
            if value < 0:
                raise ValueError(f"{name} cannot be negative")
        else:
            value = bool(value)
        setattr(policy, name, value)
    policy.updated_by = user
    with transaction.atomic():
        policy.save()
        log_action(organisation=membership.organisation, actor=user, action="gates.changed",
                   obj=policy, detail={"before": before, "after": {
                       name: getattr(policy, name) for name in EDITABLE_GATE_FIELDS}})
    return policy


def _primary(model_version: ModelVersion) -> tuple[str, bool]:
    spec = _spec(model_version.vertical, model_version.problem)
    metric = spec.primary_metric
    return metric, metric not in LOWER_IS_BETTER


def _gain(value: float, reference: float, *, higher_better: bool) -> float:
    """How much better ``value`` is than ``reference`` (negative: worse)."""
    return value - reference if higher_better else reference - value


def champion_of(*, organisation, vertical: str, problem: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(
        organisation=organisation, vertical=vertical, problem=problem,
        status=ModelVersion.Status.CHAMPION,
    ).select_related("run").first()


def _gate(name: str, passed: bool, message: str, *, value=None, threshold=None,
          shortfall=None, required: bool = True) -> dict:
    return {"name": name, "passed": bool(passed), "required": required, "message": message,
            "value": value, "threshold": threshold, "shortfall": shortfall}


def _fairness_gate(model_version: ModelVersion, policy: GatePolicy) -> dict:
    report = FairnessReport.objects.filter(run=model_version.run).first()
    if report is None:
        return _gate("fairness", False, "fairness: no fairness report",
                     required=policy.require_fairness)
    failed = []
    verdict = verdicts.for_report(report.report)
    for attribute, part in (report.report or {}).items():
        if verdicts.for_attribute(part).code == "not_judged":
            continue  # its checks are information, not verdicts (audits.verdicts)
        for check in part.get("checks", []):
            if check.get("passed") is False:
                value, threshold = check.get("value"), check.get("threshold")
                known = None not in (value, threshold)
                by = abs(float(value) - float(threshold)) if known else None
                failed.append({"attribute": attribute, "check": check.get("name"),
                               "value": value, "threshold": threshold, "by": by})
    if verdict.code == "not_judged":
        # Not a failure (nothing blocks on groups too small to compare), but never "passed".
        return {**_gate("fairness", True, f"fairness: not judged ({verdict.why})",
                        required=policy.require_fairness), "verdict": verdict.code}
    if report.passed and not failed:
        also = f"; {verdict.why}" if verdict.why else ""
        return _gate("fairness", True, f"fairness: every judged check of the policy passed{also}",
                     required=policy.require_fairness)
    name = Codebook.of_run(model_version.run).column
    words = ", ".join(
        f"{name(f['attribute'])} {f['check']} = {f['value']:.3f} vs limit {f['threshold']:g} "
        f"(off by {f['by']:.3f})" if f["by"] is not None else f"{name(f['attribute'])} {f['check']}"
        for f in failed
    ) or "the report did not pass"
    return _gate("fairness", False, f"fairness failed: {words}", value=failed,
                 shortfall=max((f["by"] or 0.0 for f in failed), default=None),
                 required=policy.require_fairness)


def _privacy_gate(model_version: ModelVersion, policy: GatePolicy) -> dict:
    privacy = model_version.run.privacy or {}
    limit = float(policy.max_epsilon)
    if not privacy.get("enabled"):
        return _gate("privacy", False, "privacy: trained without differential privacy",
                     threshold=limit, required=policy.require_privacy)
    epsilon = float(privacy.get("epsilon"))
    if epsilon <= limit + 1e-9:
        return _gate("privacy", True, f"privacy: ε = {figures.epsilon(epsilon)} ≤ {limit:g}",
                     value=epsilon, threshold=limit, shortfall=0.0,
                     required=policy.require_privacy)
    # Beyond the limit by less than the shown precision still says by how much, in words.
    over = figures.epsilon(epsilon - limit)
    over = over if float(over) > 0 else f"less than {10 ** -figures.EPSILON_DECIMALS:g}"
    return _gate("privacy", False, f"privacy: ε = {figures.epsilon(epsilon)} exceeds {limit:g} "
                 f"by {over}", value=epsilon, threshold=limit,
                 shortfall=epsilon - limit, required=policy.require_privacy)


def _baseline_gate(model_version: ModelVersion, policy: GatePolicy) -> dict:
    metric, higher = _primary(model_version)
    value = (model_version.run.metrics or {}).get(metric)
    baseline = ((model_version.run.result or {}).get("baseline") or {}).get("metrics", {})
    reference = baseline.get(metric)
    if value is None or reference is None:
        return _gate("baseline", False, f"baseline: {metric} missing for the model or baseline",
                     required=policy.require_baseline)
    gain = _gain(float(value), float(reference), higher_better=higher)
    if gain >= 0:
        return _gate("baseline", True, f"baseline: {metric} {value:.4f} vs baseline "
                     f"{reference:.4f}", value=value, threshold=reference, shortfall=0.0,
                     required=policy.require_baseline)
    return _gate("baseline", False, f"baseline: {metric} {value:.4f} is {-gain:.4f} worse than "
                 f"the baseline's {reference:.4f}", value=value, threshold=reference,
                 shortfall=-gain, required=policy.require_baseline)


def _champion_gate(model_version: ModelVersion, policy: GatePolicy) -> dict:
    champion = champion_of(organisation=model_version.organisation,
                           vertical=model_version.vertical, problem=model_version.problem)
    if champion is None or champion.pk == model_version.pk:
        return _gate("champion", True, "champion: there is no other champion to compare with")
    metric, higher = _primary(model_version)
    value = (model_version.run.metrics or {}).get(metric)
    reference = (champion.run.metrics or {}).get(metric)
    if value is None or reference is None:
        return _gate("champion", False, f"champion: {metric} missing")
    tolerance = float(policy.champion_tolerance)
    gain = _gain(float(value), float(reference), higher_better=higher)
    detail = (f"{metric} {value:.4f} vs champion {champion.pk}'s {reference:.4f} "
              f"(tolerance {tolerance:g})")
    if gain >= -tolerance - 1e-12:
        return _gate("champion", True, f"champion: {detail}", value=value, threshold=reference,
                     shortfall=0.0)
    return _gate("champion", False, f"champion: {detail}: worse by {-gain:.4f}, "
                 f"{-gain - tolerance:.4f} beyond the tolerance", value=value,
                 threshold=reference, shortfall=-gain - tolerance)


def _signoff_gate(model_version: ModelVersion, policy: GatePolicy) -> dict:
    approval = model_version.reviews.filter(decision=Review.Decision.APPROVE).first()
    if approval is not None and model_version.status != ModelVersion.Status.REJECTED:
        return _gate("signoff", True, f"sign-off: approved by {approval.reviewer}",
                     value=approval.reviewer.username, required=policy.require_signoff)
    return _gate("signoff", False, "sign-off: no reviewer has approved this model",
                 required=policy.require_signoff)


def evaluate_gates(model_version: ModelVersion) -> list[dict]:
    """Every gate's verdict, in order; a gate not required still reports, but never blocks."""
    policy = gate_policy_for(organisation=model_version.organisation,
                             vertical=model_version.vertical, problem=model_version.problem)
    return [
        _fairness_gate(model_version, policy),
        _privacy_gate(model_version, policy),
        _baseline_gate(model_version, policy),
        _champion_gate(model_version, policy),
        _signoff_gate(model_version, policy),
    ]


def blocking(gates: list[dict]) -> list[dict]:
    return [gate for gate in gates if gate["required"] and not gate["passed"]]


# --- promotion, retirement, history ---------------------------------------------------------


def _record(*, model_version: ModelVersion, action: str, from_status: str, to_status: str,
            actor, reason: str, gates: list | None = None, override: bool = False
            ) -> PromotionEvent:
    event = PromotionEvent.objects.create(
        organisation=model_version.organisation, model_version=model_version,
        vertical=model_version.vertical, problem=model_version.problem, action=action,
        from_status=from_status, to_status=to_status,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        reason=reason, override=override, gates=gates or [],
    )
    log_action(organisation=model_version.organisation, actor=actor, action=f"model.{action}",
               obj=model_version, detail={"from": from_status, "to": to_status,
                                          "reason": reason, "override": override,
                                          "event": event.pk})
    return event


def promote(*, model_version: ModelVersion, user, reason: str,
            override_reason: str | None = None) -> PromotionEvent:
    """Make ``model_version`` the champion of its problem; the previous champion is retired.

    Reviewers and admins promote. GateFailure when a required gate fails, unless an admin
    gives ``override_reason`` (logged with the failing gates). ValueError on a blank reason
    or a rejected/retired model.
    """
    membership = member_of(user, model_version, roles=REVIEWER_ROLES,
                           refusal="only a reviewer or admin of this organisation can promote")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("say why this model should be the champion")
    override_reason = (override_reason or "").strip()
    if override_reason and not membership.is_admin:
        raise PermissionDenied("only an admin can override the promotion gates")
    caller_copy = model_version
    with transaction.atomic():
        model_version = ModelVersion.objects.select_for_update().select_related("run").get(
            pk=model_version.pk)
        if model_version.status in (ModelVersion.Status.REJECTED, ModelVersion.Status.RETIRED):
            raise ValueError(f"a {model_version.get_status_display().lower()} model cannot be "
                             "promoted")
        if model_version.status == ModelVersion.Status.CHAMPION:
            raise ValueError("this model is already the champion")
        gates = evaluate_gates(model_version)
        failures = blocking(gates)
        if failures and not override_reason:
            raise GateFailure(failures)
        previous = champion_of(organisation=model_version.organisation,
                               vertical=model_version.vertical, problem=model_version.problem)
        if previous is not None:
            ModelVersion.objects.filter(pk=previous.pk).update(status=ModelVersion.Status.RETIRED)
            _record(model_version=previous, action="replaced",
                    from_status=ModelVersion.Status.CHAMPION,
                    to_status=ModelVersion.Status.RETIRED, actor=user,
                    reason=f"replaced by model {model_version.pk}: {reason}")
        from_status = model_version.status
        ModelVersion.objects.filter(pk=model_version.pk).update(
            status=ModelVersion.Status.CHAMPION, decided_at=model_version.decided_at
            or timezone.now(), held_reason="")
        full_reason = reason if not failures else f"{reason}\nOVERRIDE: {override_reason}"
        event = _record(model_version=model_version,
                        action="promoted_override" if failures else "promoted",
                        from_status=from_status, to_status=ModelVersion.Status.CHAMPION,
                        actor=user, reason=full_reason, gates=gates, override=bool(failures))
    caller_copy.refresh_from_db()
    return event


def retire(*, model_version: ModelVersion, user, reason: str) -> PromotionEvent:
    """Reviewers and admins: take a model out of service (it no longer serves predictions)."""
    member_of(user, model_version, roles=REVIEWER_ROLES,
              refusal="only a reviewer or admin of this organisation can retire models")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("say why this model is retired")
    with transaction.atomic():
        from_status = ModelVersion.objects.select_for_update().get(pk=model_version.pk).status
        if from_status in (ModelVersion.Status.RETIRED, ModelVersion.Status.REJECTED):
            raise ValueError("this model is not in service")
        ModelVersion.objects.filter(pk=model_version.pk).update(status=ModelVersion.Status.RETIRED)
        event = _record(model_version=model_version, action="retired", from_status=from_status,
                        to_status=ModelVersion.Status.RETIRED, actor=user, reason=reason)
    model_version.refresh_from_db()
    return event


def history(*, organisation, vertical: str, problem: str):
    return PromotionEvent.objects.filter(
        organisation=organisation, vertical=vertical, problem=problem
    ).select_related("actor", "model_version")


# --- new models -------------------------------------------------------------------------


def _worst_disparities(report: dict) -> dict:
    """Per attribute, the largest parity/odds differences (for regression checks)."""
    worst = {}
    for attribute, part in (report or {}).items():
        disparities = part.get("disparities") or {}
        worst[attribute] = {
            key: disparities.get(key) for key in
            ("demographic_parity_difference", "equalized_odds_difference")
            if isinstance(disparities.get(key), int | float)
        }
    return worst


def fairness_regression(model_version: ModelVersion, champion: ModelVersion,
                        *, slack: float = 0.0) -> list[str]:
    """Plain descriptions of disparities that grew (beyond ``slack``) against the champion,
    or whose fairness verdict went from passed to failed."""
    mine = FairnessReport.objects.filter(run=model_version.run).first()
    theirs = FairnessReport.objects.filter(run=champion.run).first()
    if mine is None or theirs is None:
        return []
    found = []
    if theirs.passed and not mine.passed:
        found.append(f"fairness failed where champion {champion.pk} passed")
    new, old = _worst_disparities(mine.report), _worst_disparities(theirs.report)
    for attribute, values in new.items():
        for key, value in values.items():
            before = old.get(attribute, {}).get(key)
            if before is not None and value > before + slack:
                found.append(f"{attribute} {key} rose from {before:.3f} to {value:.3f}")
    return found


def on_model_created(model_version: ModelVersion) -> None:
    """Called by training when a run makes a model. A scheduled retrain enters as a
    challenger; one whose fairness regressed against the champion is held and flagged."""
    retrain = getattr(model_version.run, "retrain", None)
    if retrain is None:
        return
    champion = champion_of(organisation=model_version.organisation,
                           vertical=model_version.vertical, problem=model_version.problem)
    regressions = fairness_regression(model_version, champion) if champion else []
    held = "; ".join(regressions)
    ModelVersion.objects.filter(pk=model_version.pk).update(
        status=ModelVersion.Status.CHALLENGER, held_reason=held)
    model_version.status = ModelVersion.Status.CHALLENGER
    model_version.held_reason = held
    _record(model_version=model_version, action="held" if held else "challenger",
            from_status=ModelVersion.Status.PENDING_REVIEW,
            to_status=ModelVersion.Status.CHALLENGER, actor=None,
            reason=(f"scheduled retrain held: {held}" if held
                    else f"scheduled retrain (schedule {retrain.schedule_id})"))


def gate_summary(model_version: ModelVersion) -> dict:
    """Gates plus whether promotion is possible now, for pages and the API."""
    gates = evaluate_gates(model_version)
    return {"gates": gates, "blocking": [g["name"] for g in blocking(gates)],
            "promotable": not blocking(gates)}


__all__ = [
    "GATE_NAMES", "GateFailure", "champion_of", "evaluate_gates",
    "gate_policy_for", "gate_summary", "history", "on_model_created", "promote",
    "retire", "update_gate_policy",
]
