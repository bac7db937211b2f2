"""A dataset's privacy budget: defaults, admin-only changes, refusal before a run starts."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from audits.models import AuditLogEntry
from governance.ledger import (
    BudgetExceeded,
    charge_run,
    ledger_status,
    policy_for,
    set_dataset_policy,
)
from governance.models import LedgerEntry
from training.models import TrainingRun
from training.services import start_run
from verticals.registry import get_problem

pytestmark = pytest.mark.django_db


def spent_run(version, user, *, epsilon: float, status=TrainingRun.Status.SUCCEEDED):
    """A finished private run with the given spend (no training: the ledger only reads it)."""
    run = TrainingRun.objects.create(
        organisation=version.dataset.organisation, dataset_version=version,
        vertical="finance", problem="credit_risk", status=status, created_by=user,
        privacy_requested={"enabled": True, "target_epsilon": epsilon, "delta": None},
        privacy={"enabled": True, "epsilon": epsilon, "delta": 1e-5, "steps": 10,
                 "noise_multiplier": None, "sample_rate": None},
    )
    charge_run(run.pk)
    return run


def test_default_budget_comes_from_the_problem(validated_version):
    spec = get_problem("finance", "credit_risk").spec
    policy = policy_for(validated_version.dataset)
    assert policy.budget_epsilon == spec.dataset_budget_epsilon == 10.0
    assert policy.personal_data is True


def test_only_admins_set_the_budget(validated_version, analyst, reviewer, admin, other_admin):
    dataset = validated_version.dataset
    for user in (analyst, reviewer, other_admin):
        with pytest.raises(PermissionDenied):
            set_dataset_policy(dataset=dataset, user=user, budget_epsilon=50)
    with pytest.raises(ValueError):
        set_dataset_policy(dataset=dataset, user=admin, budget_epsilon=0)
    policy = set_dataset_policy(dataset=dataset, user=admin, budget_epsilon=4)
    assert policy.budget_epsilon == 4 and policy.updated_by == admin
    entry = AuditLogEntry.objects.get(action="dataset.policy_changed")
    assert entry.detail["before"]["budget_epsilon"] == 10.0
    assert entry.detail["after"]["budget_epsilon"] == 4


def test_a_run_that_would_exceed_the_budget_is_refused_before_it_starts(
    validated_version, analyst, admin
):
    set_dataset_policy(dataset=validated_version.dataset, user=admin, budget_epsilon=5)
    spent_run(validated_version, analyst, epsilon=2.5)
    spent_run(validated_version, analyst, epsilon=1.5, status=TrainingRun.Status.CANCELLED)
    assert ledger_status(validated_version.dataset).remaining == pytest.approx(1.0)

    with pytest.raises(BudgetExceeded) as refused:
        start_run(version=validated_version, user=analyst, target_epsilon=1.5, enqueue=False)
    assert "only ε = 1.00 of" in str(refused.value) and "5" in str(refused.value)
    assert TrainingRun.objects.count() == 2  # nothing was created

    allowed = start_run(version=validated_version, user=analyst, target_epsilon=1.0,
                        enqueue=False)
    assert allowed.status == "queued"
    # The queued run reserves its target: nothing is left for another.
    assert ledger_status(validated_version.dataset).remaining == pytest.approx(0.0)
    with pytest.raises(BudgetExceeded):
        start_run(version=validated_version, user=analyst, target_epsilon=0.1, enqueue=False)


def test_the_refusal_is_a_400_in_the_api(validated_version, analyst, admin, api_client):
    set_dataset_policy(dataset=validated_version.dataset, user=admin, budget_epsilon=2)
    response = api_client(analyst).post(
        "/api/v1/runs/", {"dataset_version": validated_version.pk,
                          "privacy": {"target_epsilon": 3}}, format="json")
    assert response.status_code == 400
    assert "remains" in response.json()["detail"]
    assert not TrainingRun.objects.exists()


def test_runs_on_another_dataset_do_not_count(validated_version, analyst, admin, finance_csv):
    from ingestion.services import confirm_mapping, upload_dataset
    from tests.conftest import csv_upload

    set_dataset_policy(dataset=validated_version.dataset, user=admin, budget_epsilon=3)
    spent_run(validated_version, analyst, epsilon=3)
    other = upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                           file=csv_upload(finance_csv), name="Other applications")
    other = confirm_mapping(version=other, user=analyst,
                            mapping=get_problem("finance", "credit_risk").sample_mapping)
    assert start_run(version=other, user=analyst, target_epsilon=3, enqueue=False)
    # A new version of the same dataset shares its ledger (same people).
    again = upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                           file=csv_upload(finance_csv), dataset=validated_version.dataset)
    again = confirm_mapping(version=again, user=analyst,
                            mapping=get_problem("finance", "credit_risk").sample_mapping)
    with pytest.raises(BudgetExceeded):
        start_run(version=again, user=analyst, target_epsilon=0.5, enqueue=False)
    assert LedgerEntry.objects.count() == 1


# --- the empirical privacy audit's retraining spends the same records' budget ---------------


def _private_model(version, user, *, target: float):
    from training.models import ModelVersion

    run = spent_run(version, user, epsilon=target)
    return ModelVersion.objects.create(organisation=run.organisation, run=run,
                                       vertical="finance", problem="credit_risk",
                                       artifact_sha256="0" * 64)


def test_a_privacy_audit_reserves_its_target_and_is_charged_when_it_ends(
    validated_version, analyst, client
):
    from governance.ledger import charge_privacy_audit, reserve_privacy_audit
    from governance.models import PrivacyAudit

    model = _private_model(validated_version, analyst, target=3.0)
    audit = reserve_privacy_audit(model_version=model, user=analyst, target_epsilon=3.0)
    # Queued: its target is reserved (nothing charged yet), so no second request slips in.
    status = ledger_status(validated_version.dataset)
    assert status.reserved == pytest.approx(3.0) and status.remaining == pytest.approx(4.0)
    with pytest.raises(BudgetExceeded, match="reserved by runs and audits in progress 3.00"):
        reserve_privacy_audit(model_version=model, user=analyst, target_epsilon=4.5)
    # A failure after its training began: charged its whole target, reservation freed.
    PrivacyAudit.objects.filter(pk=audit.pk).update(status=PrivacyAudit.Status.FAILED)
    audit.status = PrivacyAudit.Status.FAILED
    entry = charge_privacy_audit(audit, privacy=None)
    assert entry.purpose == LedgerEntry.Purpose.PRIVACY_AUDIT and entry.run is None
    assert entry.audited_model == model and entry.basis == LedgerEntry.Basis.UPPER_BOUND
    assert entry.epsilon == 3.0 and entry.delta == 1e-5 and entry.run_status == "failed"
    audit.refresh_from_db()
    assert audit.ledger_entry == entry
    status = ledger_status(validated_version.dataset)
    # Two charges of 3.0 without noise parameters compose by the basic theorem.
    assert status.reserved == 0.0
    assert status.spent.epsilon == pytest.approx(6.0) and status.remaining == pytest.approx(4.0)
    rows = status.to_dict()["entries"]
    assert [r["purpose"] for r in rows] == ["training", "privacy_audit"]
    assert rows[1]["run"] is None and rows[1]["audited_model"] == model.pk
    assert AuditLogEntry.objects.filter(action="ledger.charged",
                                        detail__purpose="privacy_audit").count() == 1
    client.force_login(analyst)
    page = client.get(f"/governance/datasets/{validated_version.dataset.pk}/ledger/")
    assert f"privacy audit of model {model.pk}" in page.content.decode()


def test_an_audit_that_does_not_fit_is_refused_and_the_earlier_one_kept(
    validated_version, analyst, reviewer
):
    from governance.privacy_audit import REFUSED_KEY, RESULT_KEY, request_audit, run_audit

    model = _private_model(validated_version, analyst, target=8.0)  # 2.0 of 10 left
    earlier = {"epsilon_lower_bound": 0.1, "claimed_epsilon": 2.9, "consistent": True}
    model.run.result = {RESULT_KEY: earlier}
    model.run.save(update_fields=["result"])
    with pytest.raises(BudgetExceeded, match="privacy audit"):
        request_audit(model_version=model, user=reviewer)
    # Refused in the task too (the budget lowered between request and task: here an audit
    # queued before the run was charged), without training.
    from governance.models import PrivacyAudit

    queued = PrivacyAudit.objects.create(organisation=model.organisation, model_version=model,
                                         target_epsilon=8.0, created_by=reviewer)
    summary = run_audit(queued.pk)
    assert "only ε = 2.00" in summary["refused"]
    queued.refresh_from_db()
    assert queued.status == PrivacyAudit.Status.FAILED and "only ε = 2.00" in queued.message
    model.run.refresh_from_db()
    assert model.run.result[RESULT_KEY] == earlier and REFUSED_KEY in model.run.result
    assert LedgerEntry.objects.filter(purpose="privacy_audit").count() == 0
    assert AuditLogEntry.objects.filter(action="model.privacy_audit_refused").exists()


def test_a_ledger_entry_names_exactly_what_it_charges(validated_version, analyst):
    from django.db import IntegrityError, transaction

    run = spent_run(validated_version, analyst, epsilon=1.0)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(dataset=validated_version.dataset, run=None,
                                   run_status="x", basis="accounted", epsilon=1.0, delta=1e-5,
                                   total_epsilon_after=2.0)
    assert LedgerEntry.objects.filter(run=run).count() == 1
