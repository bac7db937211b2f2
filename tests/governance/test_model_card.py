"""Model cards: a JSON document and a printable HTML page per version."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders

from governance.registry import promote

pytestmark = pytest.mark.django_db


@pytest.fixture
def champion(make_model, approve, reviewer):
    model = approve(make_model(), comment="Fair and private enough.")
    promote(model_version=model, user=reviewer, reason="Best so far.")
    return model


def test_card_json_holds_every_section(client, analyst, champion, validated_version):
    client.force_login(analyst)
    response = client.get(f"/governance/models/{champion.pk}/card.json")
    assert response.status_code == 200
    card = response.json()
    assert card["intended_use"]["problem"] and card["intended_use"]["task_type"]
    assert card["data"]["rows"] == 400 and card["data"]["sha256"] == validated_version.sha256
    assert card["metrics"]["rows"][0] == {"metric": "roc_auc", "model": 0.74, "baseline": 0.72,
                                          "nonprivate_twin": None}
    privacy = card["privacy"]
    for name in ("epsilon", "delta", "accountant", "sample_rate", "noise_multiplier",
                 "max_grad_norm", "steps"):
        assert privacy[name] is not None, name
    assert "(2.90, 1e-05)-differential privacy" in privacy["statement"]
    assert set(card["fairness"]["attributes"]["sex"]["by_group"]) == {"female", "male"}
    approval = card["approval"]
    assert approval["status"] == "champion"
    assert approval["reviews"][0]["reviewer"] == "rita"
    assert approval["history"][0]["action"] == "promoted"
    assert card["limitations"]


def test_card_page_prints_cleanly(client, analyst, champion):
    client.force_login(analyst)
    response = client.get(f"/governance/models/{champion.pk}/card/")
    assert response.status_code == 200
    html = response.content.decode()
    for heading in ("Intended use", "Data", "Metrics", "Privacy guarantee", "Fairness by group",
                    "Approval record", "Known limitations"):
        assert heading in html
    assert "governance/card.css" in html
    css = open(finders.find("governance/card.css")).read()
    assert "@media print" in css and ".site-header" in css


def test_another_organisation_cannot_read_the_card(client, other_analyst, champion):
    client.force_login(other_analyst)
    assert client.get(f"/governance/models/{champion.pk}/card.json").status_code == 404
    assert client.get(f"/governance/models/{champion.pk}/card/").status_code == 404


def test_the_api_serves_the_card(api_client, analyst, champion):
    response = api_client(analyst).get(f"/api/v1/models/{champion.pk}/card/")
    assert response.status_code == 200 and response.json()["model"]["id"] == champion.pk


@pytest.mark.slow
def test_fairness_under_privacy_flags_groups_that_lost_more(trained_model, client, analyst):
    from audits.models import FairnessReport

    client.force_login(analyst)
    body = client.get(f"/governance/models/{trained_model.pk}/card.json").json()
    section = body["fairness_under_privacy"]
    run = trained_model.run
    overall = run.result["nonprivate_metrics"]["accuracy"] - run.metrics["accuracy"]
    assert section["overall_accuracy_drop"] == pytest.approx(overall)
    report = FairnessReport.objects.get(run=run)
    for attribute, rows in section["attributes"].items():
        for group, row in rows.items():
            private = report.report[attribute]["by_group"][group]["accuracy"]
            twin = report.nonprivate_report[attribute]["by_group"][group]["accuracy"]
            assert row["drop"] == pytest.approx(twin - private)
            assert row["flagged"] == (row["drop"] > overall)
    assert "Fairness under privacy" in client.get(
        f"/governance/models/{trained_model.pk}/card/").content.decode()


AUDIT = {"epsilon_lower_bound": 0.42, "confidence": 0.95, "claimed_epsilon": 2.9,
         "consistent": True, "canaries": 256, "method": "one-run membership-inference audit"}


def test_card_shows_the_empirical_audit_beside_the_claim(client, analyst, champion):
    client.force_login(analyst)
    card = client.get(f"/governance/models/{champion.pk}/card.json").json()
    assert card["privacy"]["empirical_audit"]["done"] is False
    run = champion.run
    run.result = {**(run.result or {}), "privacy_audit": AUDIT}
    run.save(update_fields=["result"])
    audit = client.get(f"/governance/models/{champion.pk}/card.json").json()["privacy"][
        "empirical_audit"]
    assert audit["epsilon_lower_bound"] == 0.42 and audit["consistent"] is True
    expected = ("Empirical epsilon lower bound 0.42 (95% confidence) vs this model’s epsilon "
                "2.90")
    assert audit["statement"].startswith(expected)
    html = client.get(f"/governance/models/{champion.pk}/card/").content.decode()
    assert expected in html and "consistent" in html
    assert "Run the audit again" not in html  # analysts cannot start one


def test_a_bound_above_the_claim_is_flagged(client, reviewer, champion):
    run = champion.run
    run.result = {**(run.result or {}), "privacy_audit": {
        **AUDIT, "epsilon_lower_bound": 3.5, "consistent": False}}
    run.save(update_fields=["result"])
    client.force_login(reviewer)
    html = client.get(f"/governance/models/{champion.pk}/card/").content.decode()
    assert "exceeds the claim" in html and "leaks more than its accountant says" in html
    assert "Run the audit again" in html


def test_only_reviewers_queue_an_audit(client, analyst, reviewer, champion):
    from audits.models import AuditLogEntry

    client.force_login(analyst)
    assert client.post(f"/governance/models/{champion.pk}/privacy-audit/").status_code == 403
    client.force_login(reviewer)
    response = client.post(f"/governance/models/{champion.pk}/privacy-audit/",
                           {"confirm": "yes"})
    assert response.status_code == 302
    assert AuditLogEntry.objects.filter(action="model.privacy_audit_requested").exists()


def test_the_audit_asks_before_it_charges_the_budget(client, reviewer, champion,
                                                     django_capture_on_commit_callbacks):
    """The first click shows the charge against the dataset's ledger and queues nothing; only
    the confirmation queues the audit (which charges before it retrains)."""
    from unittest import mock

    from audits.models import AuditLogEntry
    from governance.ledger import ledger_status

    dataset = champion.run.dataset_version.dataset
    before = ledger_status(dataset)
    client.force_login(reviewer)
    url = f"/governance/models/{champion.pk}/privacy-audit/"
    with mock.patch("governance.tasks.audit_privacy.apply_async") as queued, \
            django_capture_on_commit_callbacks(execute=True):
        page = client.post(url)
        assert page.status_code == 200 and not queued.called
        html = page.content.decode()
        assert "Spend privacy budget on an empirical audit?" in html
        # The charge is the configuration's target (3.0 for credit risk); the budget is 10.
        assert 'data-field="charge">ε 3.00<' in html
        assert f"ε {before.spent.epsilon + before.reserved:.2f} spent or reserved of 10.00" in html
        assert "This model's own ε</dt><dd>2.90" in html
        assert not AuditLogEntry.objects.filter(action="model.privacy_audit_requested").exists()
        assert ledger_status(dataset).spent.epsilon == before.spent.epsilon
        assert client.post(url, {"confirm": "yes"}).status_code == 302
    assert queued.call_count == 1
    assert AuditLogEntry.objects.filter(action="model.privacy_audit_requested").count() == 1


def test_the_statement_compares_with_the_models_own_epsilon(client, analyst, champion):
    run = champion.run
    run.result = {**(run.result or {}), "privacy_audit": {**AUDIT, "claimed_epsilon": 3.0}}
    run.save(update_fields=["result"])
    client.force_login(analyst)
    audit = client.get(f"/governance/models/{champion.pk}/card.json").json()["privacy"][
        "empirical_audit"]
    assert "vs this model’s epsilon 2.90" in audit["statement"]
    assert audit["model_epsilon"] == 2.9


@pytest.mark.slow
def test_the_audit_of_a_trained_private_model_stays_below_its_claim(trained_model, client,
                                                                      reviewer):
    from governance.privacy_audit import request_audit, run_audit

    summary = run_audit(request_audit(model_version=trained_model, user=reviewer).pk,
                        canaries=64)
    trained_model.run.refresh_from_db()
    assert trained_model.run.result["privacy_audit"] == summary
    assert summary["claimed_epsilon"] > 0
    assert summary["epsilon_lower_bound"] < summary["claimed_epsilon"]
    assert summary["consistent"] is True
    # The retraining was charged to the dataset's ledger: what its accountant reported.
    from governance.models import LedgerEntry

    charge = LedgerEntry.objects.get(purpose="privacy_audit", audited_model=trained_model)
    assert summary["ledger"]["charged_epsilon"] == charge.epsilon
    assert charge.epsilon == summary["privacy"]["epsilon"]
    assert charge.steps == summary["privacy"]["steps"] > 0
    client.force_login(reviewer)
    html = client.get(f"/governance/models/{trained_model.pk}/card/").content.decode()
    assert "Empirical epsilon lower bound" in html
