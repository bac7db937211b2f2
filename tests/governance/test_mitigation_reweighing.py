"""Mitigation by reweighing from a failed report: a reviewer queues a reweighed run (same
dataset version, seed and privacy request); once it has run, its report sits beside the
original on the same test rows, with the utility cost, on the model's page."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
@pytest.mark.slow
def test_a_reviewer_starts_a_reweighed_run(trained_model, analyst, reviewer, client):
    from django.core.exceptions import PermissionDenied

    from audits.models import FairnessReport
    from governance.mitigation import mitigate, refresh_reweighing
    from training.models import TrainingRun
    from training.services import execute_run

    report = FairnessReport.objects.get(run=trained_model.run)
    if report.passed:
        # Judged as a stricter organisation would: the numbers stay the model's own.
        FairnessReport.objects.filter(pk=report.pk).update(passed=False)
    with pytest.raises(PermissionDenied):
        mitigate(model_version=trained_model, user=analyst, method="reweighing")
    with pytest.raises(ValueError):
        mitigate(model_version=trained_model, user=reviewer, method="reweighing",
                 attribute="income")

    mitigation = mitigate(model_version=trained_model, user=reviewer, method="reweighing",
                          attribute="foreign_worker")
    new_run = TrainingRun.objects.get(pk=mitigation.result["run"])
    original = trained_model.run
    assert new_run.config == {**original.config, "reweigh_attribute": "foreign_worker"}
    assert new_run.privacy_requested["enabled"] == original.privacy_requested["enabled"]
    assert "mitigated" not in refresh_reweighing(mitigation).result  # not run yet

    execute_run(new_run.pk)
    new_run.refresh_from_db()
    assert new_run.status == "succeeded", new_run.error
    assert any("reweighing" in note for note in new_run.result["notes"])
    result = refresh_reweighing(mitigation).result
    assert result["eval_rows"] == original.result["split"]["test"]
    assert result["mitigated"]["run"] == new_run.pk
    for name, cost in result["utility_cost"].items():
        assert cost == pytest.approx(original.metrics[name] - new_run.metrics[name])
    assert "foreign_worker" in result["mitigated"]["fairness"]

    client.force_login(reviewer)
    page = client.get(f"/governance/models/{trained_model.pk}/").content.decode()
    assert "Reweighing on foreign_worker" in page and "utility cost" in page.lower()
