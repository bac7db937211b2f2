"""Fairness under privacy on the report page: for a private model, each group's accuracy sits
beside its non-private twin's, and groups whose drop exceeds the overall drop are flagged
(numbers from governance.cards.privacy_cost_by_group, checked here by hand)."""

from __future__ import annotations

import re

import pytest

GROUP = {"count": 200, "selection_rate": 0.3, "tpr": 0.7, "fpr": 0.2}


def _report(accuracies: dict) -> dict:
    return {"foreign_worker": {
        "by_group": {g: {**GROUP, "count": n, "accuracy": a} for g, (n, a) in accuracies.items()},
        "disparities": {"demographic_parity_difference": 0.05},
        "checks": [], "judged_groups": list(accuracies), "passed": True}}


@pytest.fixture
def private_model(validated_version, analyst):
    from audits.models import FairnessReport
    from training.models import ModelVersion, TrainingRun

    def make(*, private: bool = True, accuracy: float = 0.70, groups=None):
        private_groups, twin_groups = groups or ({"no": (300, 0.72), "yes": (40, 0.60)},
                                                 {"no": (300, 0.74), "yes": (40, 0.75)})
        run = TrainingRun.objects.create(
            organisation=validated_version.dataset.organisation,
            dataset_version=validated_version, vertical="finance", problem="credit_risk",
            status=TrainingRun.Status.SUCCEEDED, metrics={"accuracy": accuracy},
            privacy={"enabled": private, "epsilon": 2.0 if private else None},
            result={"nonprivate_metrics": {"accuracy": 0.75}}, created_by=analyst)
        FairnessReport.objects.create(
            run=run, passed=True, report=_report(private_groups),
            nonprivate_report=_report(twin_groups))
        ModelVersion.objects.create(organisation=run.organisation, run=run, vertical="finance",
                                    problem="credit_risk", artifact_sha256="0" * 64)
        return run

    return make


def _rows(page: str) -> dict:
    table = page.split("Privacy cost by foreign_worker", 1)[1].split("</table>", 1)[0]
    rows = {}
    for group, body in re.findall(r'<th scope="row">(\w+)</th>(.*?)</tr>', table, re.S):
        cells = re.findall(r"<td>(.*?)</td>", body, re.S)
        rows[group] = [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells]
    return rows


@pytest.mark.django_db
def test_private_report_flags_groups_that_lost_more_than_overall(private_model, client,
                                                                 analyst):
    run = private_model()
    client.force_login(analyst)
    page = client.get(f"/reviews/runs/{run.pk}/report/").content.decode()
    assert "Fairness under privacy" in page
    rows = _rows(page)
    # Overall drop 0.75 - 0.70 = 0.05; "no" lost 0.02 (within), "yes" lost 0.15 (flagged).
    assert rows["no"][:4] == ["300", "0.720", "0.740", "0.020"]
    assert rows["no"][4] == "Within overall"
    assert rows["yes"][:4] == ["40", "0.600", "0.750", "0.150"]
    assert rows["yes"][4] == "Drop above overall"
    assert "0.050" in page.split("Fairness under privacy", 1)[1].split("</p>", 1)[0]


@pytest.mark.django_db
def test_nonprivate_report_has_no_privacy_cost_section(private_model, client, analyst):
    run = private_model(private=False)
    client.force_login(analyst)
    page = client.get(f"/reviews/runs/{run.pk}/report/").content.decode()
    assert "Fairness under privacy" not in page


@pytest.mark.django_db
def test_a_private_model_better_than_its_twin_reads_higher_and_flags_only_real_drops(
        private_model, client, analyst):
    # Private 0.77 vs twin 0.75 overall: "0.020 higher", never "-0.020 lower". The group
    # whose accuracy did not move (drop 0.000) is not flagged; the one that lost 0.05 is.
    run = private_model(accuracy=0.77, groups=({"no": (300, 0.74), "yes": (40, 0.70)},
                                               {"no": (300, 0.74), "yes": (40, 0.75)}))
    client.force_login(analyst)
    page = client.get(f"/reviews/runs/{run.pk}/report/").content.decode()
    intro = page.split("Fairness under privacy", 1)[1].split("</p>", 1)[0]
    assert "0.020 higher" in intro and "lower" not in intro and "-0.0" not in intro
    rows = _rows(page)
    assert rows["no"][3] == "0.000" and rows["no"][4] == "No drop"
    assert rows["yes"][3] == "0.050" and rows["yes"][4] == "Dropped"
