"""The analyst's names and labels (ingestion.codebook) on every page that names a column or
a group: dataset profile, report, review page, queue, model card (page and JSON), governance
pages and the API; the stored results keep the original names and codes."""

from __future__ import annotations

import copy

import pytest

from audits.models import AuditLogEntry, FairnessReport
from tests.web.factories import make_succeeded_run, make_version
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

NAMES = {"sex": "applicant sex", "default": "defaulted"}
LABELS = {"sex": {"female": "woman", "male": "man"}}


@pytest.fixture
def named_run(org_a, analyst):
    version = make_version(organisation=org_a, user=analyst)
    version.column_names, version.value_labels = NAMES, LABELS
    version.mapping = {**version.suggested_mapping}
    version.profile = {"rows": 400, "n_columns": 5, "target_balance": {"0": 300, "1": 100},
                       "columns": [{"name": "sex", "dtype": "categorical", "role": "sensitive",
                                    "n_unique": 2, "missing_share": 0.0,
                                    "top_values": [["female", 210], ["male", 190]]},
                                   {"name": "default", "dtype": "numeric", "role": "target",
                                    "missing_share": 0.0}],
                       "groups": {"sex": {"female": 210, "male": 190}}}
    version.save()
    return make_succeeded_run(version=version, user=analyst)


def test_every_page_shows_the_names_and_labels(named_run, client, reviewer, api_client):
    run, model = named_run, named_run.model_version
    stored = copy.deepcopy(FairnessReport.objects.get(run=run).report)
    client.force_login(reviewer)
    pages = {name: client.get(url).content.decode() for name, url in {
        "version": f"/datasets/versions/{run.dataset_version_id}/",
        "report": f"/reviews/runs/{run.pk}/report/", "review": f"/reviews/models/{model.pk}/",
        "card": f"/governance/models/{model.pk}/card/",
        "governance": f"/governance/models/{model.pk}/"}.items()}
    assert "Groups of applicant sex" in pages["version"]
    assert "Most frequent values of applicant sex" in pages["version"]
    assert ">woman<" in pages["version"] and "defaulted" in pages["version"]
    for name in ("report", "review"):
        page = pages[name]
        assert "Sensitive attribute: applicant sex" in page, name
        assert '<th scope="row">woman</th>' in page and '<th scope="row">man</th>' in page
        assert "Sensitive attribute: sex" not in page and '<th scope="row">female</th>' \
            not in page, name
    assert "applicant sex: failed" in pages["review"]
    assert "Fairness failed: applicant sex" in pages["governance"] or \
        "fairness failed: applicant sex" in pages["governance"]
    assert "applicant sex" in pages["card"] and "woman" in pages["card"]

    card = client.get(f"/governance/models/{model.pk}/card.json").json()
    assert set(card["fairness"]["attributes"]) == {"applicant sex", "age"}
    assert set(card["fairness"]["attributes"]["applicant sex"]["by_group"]) == {"woman", "man"}
    assert card["data"]["sensitive"] == ["applicant sex", "age"]
    assert card["data"]["target"] == "defaulted"
    assert card["data"]["codebook"] == {"column_names": NAMES, "value_labels": LABELS}

    api = api_client(reviewer)
    detail = api.get(f"/api/v1/models/{model.pk}/").json()
    assert detail["codebook"] == {"column_names": NAMES, "value_labels": LABELS}
    assert api.get(f"/api/v1/runs/{run.pk}/").json()["codebook"]["column_names"] == NAMES
    report = api.get(f"/api/v1/models/{model.pk}/report/").json()
    assert report["fairness"]["verdict"]["attributes"]["sex"]["display_name"] == "applicant sex"

    # Presentation only: what was stored is keyed by the file's names and codes, unchanged.
    run.refresh_from_db()
    assert FairnessReport.objects.get(run=run).report == stored
    assert set(run.fairness["sex"]["by_group"]) == {"female", "male"}


def test_compare_names_the_attribute(named_run, org_a, analyst, client, reviewer):
    other = make_succeeded_run(version=named_run.dataset_version, user=analyst)
    client.force_login(reviewer)
    page = client.get(f"/governance/models/compare/?pick={named_run.model_version.pk}"
                      f"&pick={other.model_version.pk}").content.decode()
    assert "Fairness: applicant sex" in page and "Fairness: sex<" not in page


def test_api_reads_and_writes_the_codebook(validated_version, analyst, other_analyst,
                                           api_client):
    api = api_client(analyst)
    url = f"/api/v1/dataset-versions/{validated_version.pk}/codebook/"
    assert api.get(url).json() == {"column_names": {}, "value_labels": {}}
    column = validated_version.columns[0]
    answer = api.put(url, {"column_names": {column: "applicant number"},
                           "value_labels": {"sex": {"F": "woman", "M": "man"}}}, format="json")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["column_names"] == {column: "applicant number"}
    validated_version.refresh_from_db()
    assert validated_version.value_labels == {"sex": {"F": "woman", "M": "man"}}
    assert AuditLogEntry.objects.filter(action="dataset.codebook_changed").count() == 1

    # A PUT replaces: "sex" may not take the name another column keeps.
    refused = api.put(url, {"column_names": {"nope": "x", "sex": column}}, format="json")
    assert refused.status_code == 400
    assert any("there is no column 'nope'" in e for e in refused.json()["errors"])
    assert any(f"would both be shown as {column!r}" in e
               for e in refused.json()["errors"])
    validated_version.refresh_from_db()
    assert validated_version.column_names == {column: "applicant number"}  # nothing saved
    assert api_client(other_analyst).put(url, {"column_names": {}}, format="json"
                                         ).status_code == 404
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "/api/v1/dataset-versions/{id}/codebook/" in schema["paths"]
    assert set(schema["paths"]["/api/v1/dataset-versions/{id}/codebook/"]) >= {"get", "put"}


def test_renaming_changes_no_result(named_run, client, analyst):
    """Saving names and labels leaves the version's data, mapping and every run as it was."""
    from ingestion.codebook import Codebook
    from ingestion.services import save_codebook

    version = named_run.dataset_version
    before = (version.sha256, version.columns, version.mapping, version.profile)
    run_before = TrainingRun.objects.values("metrics", "privacy", "fairness", "result").get(
        pk=named_run.pk)
    save_codebook(version=version, user=analyst, source="the form",
                  codebook=Codebook(names={"age": "age in years"}, labels=LABELS))
    version.refresh_from_db()
    assert (version.sha256, version.columns, version.mapping, version.profile) == before
    assert TrainingRun.objects.values("metrics", "privacy", "fairness", "result").get(
        pk=named_run.pk) == run_before
