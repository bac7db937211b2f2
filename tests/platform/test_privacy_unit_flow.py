"""The privacy unit through the platform: mapped in the command, the form and the API; shown,
with the composed epsilon, on the run page, the model card, the review page and the API;
charged to the ledger as that one figure."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from governance.models import LedgerEntry
from ingestion.forms import role_choices
from tests.conftest import finance_frame
from training.models import TrainingRun
from verticals.registry import get_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def repeat_applicants(tmp_path):
    """The finance demo table where each applicant filed three applications."""
    frame = finance_frame(360, seed=5)
    frame["applicant_id"] = [f"A{i // 3}" for i in range(len(frame))]
    path = tmp_path / "applications.csv"
    frame.to_csv(path, index=False)
    return path


def test_the_mapping_form_offers_the_person_column_where_the_unit_is_mapped_alone():
    credit = [value for value, _ in role_choices(get_problem("finance", "credit_risk").spec)]
    tracing = [value for value, _ in role_choices(
        get_problem("education", "knowledge_tracing").spec)]
    assert "privacy_unit" in credit
    # Knowledge tracing's unit is its student column: no second column to map.
    assert "privacy_unit" not in tracing


@pytest.mark.slow
def test_a_person_level_run_from_the_command_is_shown_and_charged(
        repeat_applicants, client, make_member):
    out = io.StringIO()
    call_command("pipeline", str(repeat_applicants), "--vertical", "finance", "--problem",
                 "credit_risk", "--target", "default", "--sensitive", "sex",
                 "--exclude", "personal_status", "--column", "privacy_unit=applicant_id",
                 "--epsilon", "3", "--epochs", "2", "--inline", "--json", stdout=out)
    body = json.loads(out.getvalue())
    run = TrainingRun.objects.get(pk=body["run"]["id"])
    assert run.status == "succeeded", run.error
    privacy = run.privacy
    assert privacy["unit"]["name"] == "applicant"
    assert privacy["unit"]["column"] == "applicant_id"
    assert run.result["split"]["by_person"] == "applicant_id"
    assert 0 < privacy["epsilon"] <= 3 + 1e-6
    entry = LedgerEntry.objects.get(run=run)
    assert entry.epsilon == pytest.approx(privacy["epsilon"])

    organisation = run.dataset_version.dataset.organisation
    reviewer = make_member(organisation, "reviewer", "rita")
    client.force_login(reviewer)
    model = run.model_version
    for url in (f"/runs/{run.pk}/", f"/governance/models/{model.pk}/card/",
                f"/reviews/models/{model.pk}/"):
        page = client.get(url).content.decode()
        assert "one applicant (all rows sharing a value of" in page, url
        assert "curator" in page, url
    card = client.get(f"/governance/models/{model.pk}/card.json").json()
    assert card["privacy"]["epsilon"] == pytest.approx(privacy["epsilon"])
    assert "applicant" in card["privacy"]["statement"]
    api = client.get(f"/api/v1/runs/{run.pk}/").json()
    assert api["privacy"]["unit"]["name"] == "applicant"
    assert api["privacy"]["epsilon"] == pytest.approx(privacy["epsilon"])
    assert [stage["stage"] for stage in api["privacy"]["stages"]] == ["preprocessing", "sgd"]
