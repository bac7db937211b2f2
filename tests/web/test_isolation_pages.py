"""Another organisation's objects are not found (404), on every page and action."""

from __future__ import annotations

import pytest
from django.urls import reverse

from ingestion.models import DatasetVersion
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


def foreign_urls(run) -> list[tuple[str, str]]:
    version = run.dataset_version
    return [
        ("get", reverse("dataset_version", args=[version.pk])),
        ("get", reverse("dataset_mapping", args=[version.pk])),
        ("post", reverse("run_start", args=[version.pk])),
        ("get", reverse("run_detail", args=[run.pk])),
        ("get", reverse("run_progress", args=[run.pk])),
        ("get", reverse("run_progress_partial", args=[run.pk])),
        ("get", reverse("run_progress_partial", args=[run.pk]) + "?part=bar"),
        ("post", reverse("run_cancel", args=[run.pk])),
        ("get", reverse("run_report", args=[run.pk])),
        ("get", reverse("review_detail", args=[run.model_version.pk])),
        ("post", reverse("review_detail", args=[run.model_version.pk])),
        ("get", reverse("dataset_upload", args=["finance", "credit_risk"])
         + f"?dataset={version.dataset.pk}"),
    ]


@pytest.mark.parametrize("persona", ["analyst", "reviewer", "admin"])
def test_other_organisations_ids_are_not_found(client, request, persona, other_org_run):
    client.force_login(request.getfixturevalue(persona))
    for method, url in foreign_urls(other_org_run):
        data = {"decision": "approve", "comment": "x", "target_epsilon": "1", "seed": "0"}
        response = client.post(url, data) if method == "post" else client.get(url)
        assert response.status_code == 404, (method, url)
        assert b"Not found" in response.content
    other_org_run.refresh_from_db()
    assert other_org_run.model_version.status == ModelVersion.Status.PENDING_REVIEW
    assert TrainingRun.objects.count() == 1


def test_lists_show_only_the_own_organisation(client, reviewer, succeeded_run,
                                              other_org_run):
    client.force_login(reviewer)
    theirs = other_org_run.dataset_version.dataset.name
    for name in ("dashboard", "dataset_list", "run_list", "review_queue", "audit_log"):
        html = client.get(reverse(name)).content.decode()
        assert theirs not in html, name
        assert reverse("run_detail", args=[other_org_run.pk]) not in html, name
    html = client.get(reverse("run_list")).content.decode()
    assert reverse("run_detail", args=[succeeded_run.pk]) in html


def test_other_organisation_sees_none_of_ours(client, other_reviewer, succeeded_run):
    client.force_login(other_reviewer)
    version = succeeded_run.dataset_version
    assert client.get(reverse("dataset_version", args=[version.pk])).status_code == 404
    assert client.get(reverse("run_detail", args=[succeeded_run.pk])).status_code == 404
    assert DatasetVersion.objects.filter(pk=version.pk).exists()
