"""Promotion gates: each one blocks (saying which and by how much), passes, and an admin's
override is logged."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from audits.models import AuditLogEntry
from governance.models import PromotionEvent
from governance.registry import (
    GateFailure,
    evaluate_gates,
    gate_policy_for,
    promote,
    update_gate_policy,
)
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def failing(exc: GateFailure) -> dict:
    return {gate["name"]: gate for gate in exc.failures}


def test_a_model_passing_every_gate_becomes_champion(make_model, approve, reviewer):
    model = approve(make_model())
    assert all(gate["passed"] for gate in evaluate_gates(model))
    event = promote(model_version=model, user=reviewer, reason="Beats the baseline, fair.")
    assert model.status == ModelVersion.Status.CHAMPION
    assert event.action == "promoted" and not event.override
    assert event.actor == reviewer and event.from_status == "approved"
    assert {g["name"] for g in event.gates} == {"fairness", "privacy", "baseline", "champion",
                                                "signoff"}


def test_fairness_gate_blocks_and_says_by_how_much(make_model, approve, reviewer):
    model = approve(make_model(parity=0.25))
    with pytest.raises(GateFailure) as blocked:
        promote(model_version=model, user=reviewer, reason="try")
    gate = failing(blocked.value)["fairness"]
    assert "demographic_parity_difference" in gate["message"]
    assert gate["shortfall"] == pytest.approx(0.15)
    assert "0.150" in str(blocked.value)
    model.refresh_from_db()
    assert model.status == ModelVersion.Status.APPROVED
    assert not PromotionEvent.objects.exists()


def test_signoff_gate_needs_an_approving_review(make_model, reviewer):
    model = make_model()
    with pytest.raises(GateFailure) as blocked:
        promote(model_version=model, user=reviewer, reason="fast track")
    assert set(failing(blocked.value)) == {"signoff"}


def test_privacy_gate_compares_epsilon_with_the_limit(make_model, approve, reviewer, admin):
    model = approve(make_model(epsilon=2.9))
    update_gate_policy(user=admin, vertical="finance", problem="credit_risk", max_epsilon=2.0)
    with pytest.raises(GateFailure) as blocked:
        promote(model_version=model, user=reviewer, reason="ok")
    gate = failing(blocked.value)["privacy"]
    assert gate["shortfall"] == pytest.approx(0.9) and "exceeds 2 by 0.90" in gate["message"]

    nonprivate = approve(make_model(private=False))
    with pytest.raises(GateFailure) as blocked:
        promote(model_version=nonprivate, user=reviewer, reason="ok")
    assert "without differential privacy" in failing(blocked.value)["privacy"]["message"]


def test_baseline_gate(make_model, approve, reviewer):
    model = approve(make_model(roc_auc=0.70, baseline=0.72))
    with pytest.raises(GateFailure) as blocked:
        promote(model_version=model, user=reviewer, reason="ok")
    assert failing(blocked.value)["baseline"]["shortfall"] == pytest.approx(0.02)


def test_champion_gate_allows_a_tolerance_then_blocks(make_model, approve, reviewer):
    champion = approve(make_model(roc_auc=0.80))
    promote(model_version=champion, user=reviewer, reason="first champion")

    close = approve(make_model(roc_auc=0.79))  # 0.01 worse: inside the 0.02 tolerance
    assert next(g for g in evaluate_gates(close) if g["name"] == "champion")["passed"]
    worse = approve(make_model(roc_auc=0.75))  # 0.05 worse: 0.03 beyond it
    with pytest.raises(GateFailure) as blocked:
        promote(model_version=worse, user=reviewer, reason="newer data")
    gate = failing(blocked.value)["champion"]
    assert gate["shortfall"] == pytest.approx(0.03)
    assert f"champion {champion.pk}" in gate["message"]


def test_promoting_retires_the_previous_champion_and_keeps_history(
    make_model, approve, reviewer
):
    first = approve(make_model(roc_auc=0.76))
    promote(model_version=first, user=reviewer, reason="first")
    second = approve(make_model(roc_auc=0.78))
    promote(model_version=second, user=reviewer, reason="better")
    first.refresh_from_db()
    assert first.status == ModelVersion.Status.RETIRED
    assert ModelVersion.objects.filter(status="champion").get() == second
    actions = list(PromotionEvent.objects.order_by("id").values_list("action", "model_version"))
    assert actions == [("promoted", first.pk), ("replaced", first.pk), ("promoted", second.pk)]
    with pytest.raises(Exception):  # noqa: B017  append-only
        PromotionEvent.objects.first().delete()


def test_admin_override_needs_a_reason_and_is_logged(make_model, reviewer, admin):
    model = make_model(parity=0.3)  # fails fairness and has no sign-off
    with pytest.raises(PermissionDenied):
        promote(model_version=model, user=reviewer, reason="urgent", override_reason="I say so")
    with pytest.raises(GateFailure):
        promote(model_version=model, user=admin, reason="urgent", override_reason="  ")
    event = promote(model_version=model, user=admin, reason="urgent",
                    override_reason="Regulator-mandated rollback; fairness fix follows.")
    assert event.override and event.action == "promoted_override"
    assert "Regulator-mandated" in event.reason
    assert {g["name"] for g in event.gates if not g["passed"]} == {"fairness", "signoff"}
    log = AuditLogEntry.objects.get(action="model.promoted_override")
    assert log.actor == admin and log.detail["override"] is True


def test_analysts_cannot_promote_and_gates_are_admin_edited(make_model, approve, analyst,
                                                            reviewer, admin):
    model = approve(make_model())
    with pytest.raises(PermissionDenied):
        promote(model_version=model, user=analyst, reason="mine")
    with pytest.raises(PermissionDenied):
        update_gate_policy(user=reviewer, vertical="finance", problem="credit_risk",
                           require_signoff=False)
    policy = update_gate_policy(user=admin, vertical="finance", problem="credit_risk",
                                champion_tolerance=0.05, require_fairness=False)
    assert policy.champion_tolerance == 0.05 and not policy.require_fairness
    assert gate_policy_for(organisation=model.organisation, vertical="finance",
                           problem="credit_risk").max_epsilon == 3.0  # the vertical's target
    assert AuditLogEntry.objects.filter(action="gates.changed").count() == 1


def test_a_non_required_gate_reports_but_does_not_block(make_model, approve, reviewer, admin):
    update_gate_policy(user=admin, vertical="finance", problem="credit_risk",
                       require_fairness=False)
    model = approve(make_model(parity=0.3))
    event = promote(model_version=model, user=reviewer, reason="fairness waived by policy")
    assert not event.override
    assert not next(g for g in event.gates if g["name"] == "fairness")["passed"]
