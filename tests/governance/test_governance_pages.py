"""Governance pages: a model's gates and promotion, a dataset's ledger, a problem's gates."""

from __future__ import annotations

import pytest

from governance.models import GatePolicy
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_model_page_shows_gates_and_promotes(client, reviewer, make_model, approve):
    model = approve(make_model(parity=0.3))
    client.force_login(reviewer)
    page = client.get(f"/governance/models/{model.pk}/")
    assert page.status_code == 200
    assert "blocked by: fairness" in page.content.decode()

    response = client.post(f"/governance/models/{model.pk}/promote/", {"reason": "try"},
                           follow=True)
    assert "Blocked by the fairness gate" in response.content.decode()
    model.refresh_from_db()
    assert model.status == ModelVersion.Status.APPROVED


def test_admin_overrides_from_the_page(client, admin, make_model):
    model = make_model(parity=0.3)
    client.force_login(admin)
    client.post(f"/governance/models/{model.pk}/promote/",
                {"reason": "urgent", "override_reason": "Board decision 2026-11"})
    model.refresh_from_db()
    assert model.status == ModelVersion.Status.CHAMPION
    page = client.get(f"/governance/models/{model.pk}/").content.decode()
    assert "override" in page and "Board decision" in page


def test_analysts_cannot_promote(client, analyst, make_model, approve):
    model = approve(make_model())
    client.force_login(analyst)
    assert client.post(f"/governance/models/{model.pk}/promote/",
                       {"reason": "mine"}).status_code == 403


def test_ledger_page_and_admin_policy(client, analyst, admin, validated_version):
    dataset = validated_version.dataset
    client.force_login(analyst)
    page = client.get(f"/governance/datasets/{dataset.pk}/ledger/")
    assert page.status_code == 200 and 'data-field="budget">10.00<' in page.content.decode()
    assert client.post(f"/governance/datasets/{dataset.pk}/ledger/",
                       {"budget_epsilon": 99}).status_code == 403
    client.force_login(admin)
    client.post(f"/governance/datasets/{dataset.pk}/ledger/",
                {"budget_epsilon": 6, "personal_data": "on"})
    dataset.governance_policy.refresh_from_db()
    assert dataset.governance_policy.budget_epsilon == 6


def test_problem_page_gates_are_admin_edited(client, reviewer, admin, org_a):
    url = "/governance/problems/finance/credit_risk/"
    client.force_login(reviewer)
    assert client.get(url).status_code == 200
    assert client.post(url, {"max_epsilon": 9}).status_code == 403
    client.force_login(admin)
    client.post(url, {"require_fairness": "on", "require_privacy": "on", "max_epsilon": 2.5,
                      "require_baseline": "on", "champion_tolerance": 0.01,
                      "require_signoff": "on"})
    policy = GatePolicy.objects.get(organisation=org_a)
    assert policy.max_epsilon == 2.5 and policy.champion_tolerance == 0.01
    assert client.get("/governance/problems/finance/nope/").status_code == 404


def test_api_gates_promote_and_history(api_client, analyst, reviewer, make_model, approve):
    model = approve(make_model(roc_auc=0.70))
    gates = api_client(analyst).get(f"/api/v1/models/{model.pk}/gates/").json()
    assert gates["blocking"] == ["baseline"] and not gates["promotable"]
    assert api_client(analyst).post(f"/api/v1/models/{model.pk}/promote/",
                                    {"reason": "x"}).status_code == 403
    blocked = api_client(reviewer).post(f"/api/v1/models/{model.pk}/promote/", {"reason": "x"})
    assert blocked.status_code == 400 and blocked.json()["gates"][0]["name"] == "baseline"
    good = approve(make_model(roc_auc=0.8))
    done = api_client(reviewer).post(f"/api/v1/models/{good.pk}/promote/", {"reason": "best"})
    assert done.status_code == 201 and done.json()["to_status"] == "champion"
    history = api_client(analyst).get(f"/api/v1/models/{good.pk}/history/").json()
    assert [e["action"] for e in history] == ["promoted"]
    retired = api_client(reviewer).post(f"/api/v1/models/{good.pk}/retire/", {"reason": "old"})
    assert retired.status_code == 201


def test_api_ledger(api_client, analyst, validated_version):
    body = api_client(analyst).get(
        f"/api/v1/datasets/{validated_version.dataset_id}/ledger/").json()
    assert body["budget_epsilon"] == 10.0 and body["remaining_epsilon"] == 10.0


def test_admins_schedule_retraining_from_the_page(client, admin, reviewer):
    from governance.models import RetrainSchedule

    url = "/governance/problems/finance/credit_risk/schedule/"
    client.force_login(reviewer)
    assert client.post(url, {"cron": "0 4 * * 2", "enabled": "on"}).status_code == 403
    client.force_login(admin)
    client.post(url, {"cron": "0 4 * * 2", "enabled": "on", "retrain_on_drift": "on"})
    schedule = RetrainSchedule.objects.get()
    assert schedule.retrain_on_drift and schedule.periodic_task.crontab.hour == "4"
    page = client.get("/governance/problems/finance/credit_risk/").content.decode()
    assert "Save schedule" in page
    response = client.post(url, {"cron": "bad"}, follow=True)
    assert "cron" in response.content.decode()
