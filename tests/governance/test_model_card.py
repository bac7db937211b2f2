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
    assert "(2.900, 1e-05)-differential privacy" in privacy["statement"]
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
