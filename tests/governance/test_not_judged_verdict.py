"""An attribute whose groups are too small to compare is "Not judged" (with why) on every
page and in every answer: the report and review pages, the queue, the gates, the card and
the API agree, and none of them says "Passed" next to checks computed over tiny groups."""

from __future__ import annotations

import re

import pytest

from ml_core.fairness import NOT_JUDGED, attribute_verdict

BIG = {"count": 300, "selection_rate": 0.3, "tpr": 0.7, "fpr": 0.2, "accuracy": 0.75}
TINY = {"count": 6, "selection_rate": 0.9, "tpr": 1.0, "fpr": 0.8, "accuracy": 0.5}
NOTE = ("Fewer than two groups have at least 20 rows; disparities are shown over all groups "
        "but not judged.")


def _small_groups_report() -> dict:
    """As ml_core.fairness writes it: one judged group, so ``passed`` is True while its
    checks (over all groups, for information) fail."""
    return {"age": {
        "by_group": {"<25": TINY, "25+": BIG},
        "disparities": {"demographic_parity_difference": 0.6,
                        "demographic_parity_ratio": 0.333, "equalized_odds_difference": 0.6},
        "checks": [{"name": "four_fifths_rule", "value": 0.333, "threshold": 0.8,
                    "passed": False},
                   {"name": "demographic_parity_difference", "value": 0.6, "threshold": 0.1,
                    "passed": False}],
        "judged_groups": ["25+"], "insufficient_groups": True, "passed": True, "note": NOTE,
    }}


@pytest.fixture
def small_groups_model(validated_version, analyst):
    from audits.models import FairnessReport
    from training.models import ModelVersion, TrainingRun

    report = _small_groups_report()
    run = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.SUCCEEDED,
        metrics={"roc_auc": 0.74}, privacy={"enabled": True, "epsilon": 2.5, "delta": 1e-5,
                                            "target_epsilon": 3.0, "sample_rate": 0.1,
                                            "noise_multiplier": 1.0, "steps": 10,
                                            "accountant": "prv", "max_grad_norm": 1.0},
        fairness=report, result={"baseline": {"name": "logistic_regression",
                                              "metrics": {"roc_auc": 0.7}}},
        created_by=analyst)
    FairnessReport.objects.create(run=run, passed=True, report=report)
    return ModelVersion.objects.create(organisation=run.organisation, run=run,
                                       vertical="finance", problem="credit_risk",
                                       artifact_sha256="0" * 64)


def _badges(html: str) -> list[str]:
    return re.findall(r'data-verdict="(\w+)"', html)


def test_ml_core_calls_a_small_group_attribute_not_judged():
    assert attribute_verdict(_small_groups_report()["age"]) == NOT_JUDGED


@pytest.mark.django_db
def test_report_and_review_pages_say_not_judged_with_why(small_groups_model, client, reviewer):
    client.force_login(reviewer)
    for url in (f"/reviews/runs/{small_groups_model.run_id}/report/",
                f"/reviews/models/{small_groups_model.pk}/"):
        page = client.get(url).content.decode()
        section = page.split("Sensitive attribute: age", 1)[1].split("</h2>", 1)[0]
        assert "Not judged" in section and "Passed" not in section
        assert set(_badges(page)) == {"not_judged"}, url
        assert "Fewer than two groups have at least 20 rows" in page
        checks = page.split("Checks for age", 1)[1].split("</table>", 1)[0]
        assert "Not judged" in checks and ">Fail<" not in checks and ">Pass<" not in checks


@pytest.mark.django_db
def test_queue_gates_card_and_api_agree(small_groups_model, client, reviewer, api_client):
    from governance.cards import model_card
    from governance.registry import evaluate_gates

    client.force_login(reviewer)
    queue = client.get("/reviews/").content.decode()
    assert _badges(queue) == ["not_judged"]

    gate = next(g for g in evaluate_gates(small_groups_model) if g["name"] == "fairness")
    assert gate["verdict"] == "not_judged" and "not judged" in gate["message"]
    assert "every" not in gate["message"]

    card = model_card(small_groups_model)
    assert card["fairness"]["verdict"] == "not_judged"
    assert card["fairness"]["attributes"]["age"]["verdict"] == "not_judged"
    card_page = client.get(f"/governance/models/{small_groups_model.pk}/card/").content.decode()
    assert "not_judged" in _badges(card_page) and "passed" not in _badges(card_page)

    api = api_client(reviewer)
    detail = api.get(f"/api/v1/models/{small_groups_model.pk}/").json()
    assert detail["fairness_verdict"] == "not_judged"
    report = api.get(f"/api/v1/models/{small_groups_model.pk}/report/").json()
    assert report["fairness"]["verdict"]["attributes"]["age"]["verdict"] == "not_judged"
