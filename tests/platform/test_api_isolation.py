"""Organisation isolation in the API: another organisation's ids are simply not found."""

from __future__ import annotations

import pytest

from tests.conftest import csv_upload
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def org_a_objects(pending_model, analyst):
    """Org A's dataset, version, a queued run and a model awaiting review."""
    version = pending_model.run.dataset_version
    queued = TrainingRun.objects.create(
        organisation=version.dataset.organisation, dataset_version=version,
        vertical="finance", problem="credit_risk", created_by=analyst,
    )
    return {
        "dataset": version.dataset_id,
        "version": version.pk,
        "run": queued.pk,
        "model": pending_model.pk,
    }


@pytest.mark.parametrize("persona", ["other_analyst", "other_reviewer", "other_admin"])
def test_detail_endpoints_hide_other_organisations(request, api_client, org_a_objects, persona):
    client = api_client(request.getfixturevalue(persona))
    ids = org_a_objects

    for url in (
        f"{API}/datasets/{ids['dataset']}/",
        f"{API}/dataset-versions/{ids['version']}/",
        f"{API}/runs/{ids['run']}/",
        f"{API}/models/{ids['model']}/",
        f"{API}/models/{ids['model']}/report/",
    ):
        assert client.get(url).status_code == 404, url


def test_actions_on_other_organisations_objects_are_404(api_client, org_a_objects,
                                                        other_analyst, other_reviewer,
                                                        finance_csv):
    ids = org_a_objects
    analyst_b, reviewer_b = api_client(other_analyst), api_client(other_reviewer)

    assert analyst_b.post(f"{API}/dataset-versions/{ids['version']}/mapping/",
                          {"target": "default"}, format="json").status_code == 404
    assert analyst_b.post(f"{API}/runs/", {"dataset_version": ids["version"]},
                          format="json").status_code == 404
    assert analyst_b.post(f"{API}/runs/{ids['run']}/cancel/").status_code == 404
    assert reviewer_b.post(f"{API}/models/{ids['model']}/review/",
                           {"decision": "approve", "comment": "x"}).status_code == 404
    upload = analyst_b.post(
        f"{API}/datasets/",
        {"vertical": "finance", "problem": "credit_risk", "file": csv_upload(finance_csv),
         "dataset": ids["dataset"]},
        format="multipart",
    )
    assert upload.status_code == 404
    assert TrainingRun.objects.get(pk=ids["run"]).status == "queued"


def test_lists_show_only_the_own_organisation(api_client, org_a_objects, other_analyst,
                                              analyst):
    client_b, client_a = api_client(other_analyst), api_client(analyst)

    for resource in ("datasets", "runs", "models"):
        assert client_b.get(f"{API}/{resource}/").json()["count"] == 0, resource
        assert client_a.get(f"{API}/{resource}/").json()["count"] >= 1, resource


def test_user_without_organisation_is_refused(api_client, org_a_objects, django_user_model):
    loner = django_user_model.objects.create_user(username="loner", password="pw")
    client = api_client(loner)

    assert client.get(f"{API}/datasets/").status_code == 403
    assert client.get(f"{API}/models/{org_a_objects['model']}/").status_code == 403
