"""REST API v1: every endpoint, token authentication, the OpenAPI schema and its docs page."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from ingestion.models import DatasetVersion
from tests.conftest import csv_upload
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def client(api_client, analyst):
    return api_client(analyst)


def post_upload(client, data: bytes, **fields):
    body = {"vertical": "finance", "problem": "credit_risk", "file": csv_upload(data), **fields}
    return client.post(f"{API}/datasets/", body, format="multipart")


def test_token_is_issued_for_a_username_and_password(api_client, analyst):
    anonymous = api_client()
    response = anonymous.post(f"{API}/auth/token/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 200
    token = response.json()["token"]

    anonymous.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anonymous.get(f"{API}/datasets/").status_code == 200
    wrong = api_client().post(f"{API}/auth/token/", {"username": "alice", "password": "x"})
    assert wrong.status_code == 400


def test_anonymous_requests_get_401_not_a_login_redirect(api_client):
    response = api_client().get(f"{API}/datasets/")
    assert response.status_code == 401
    assert api_client().get(f"{API}/runs/1/").status_code == 401


def test_verticals_list_their_problems(client):
    response = client.get(f"{API}/verticals/")
    assert response.status_code == 200
    finance = next(v for v in response.json() if v["key"] == "finance")
    problem = finance["problems"][0]
    assert problem["key"] == "credit_risk"
    assert problem["task_type"] == "binary_classification"
    assert problem["privacy"]["target_epsilon"] == 3.0


def test_upload_then_confirm_mapping(client, finance_csv):
    response = post_upload(client, finance_csv, name="Applications")
    assert response.status_code == 201, response.json()
    version = response.json()
    assert version["status"] == "pending"
    assert version["suggested_mapping"]["target"] == "default"

    detail = client.get(f"{API}/dataset-versions/{version['id']}/")
    assert detail.status_code == 200 and detail.json()["sha256"] == version["sha256"]

    confirmed = client.post(
        f"{API}/dataset-versions/{version['id']}/mapping/",
        {"target": "default", "sensitive": ["sex", "age", "foreign_worker"],
         "exclude": ["personal_status"], "id": "applicant_id"},
        format="json",
    )
    assert confirmed.status_code == 200, confirmed.json()
    body = confirmed.json()
    assert body["status"] == "validated" and body["trainable"] is True
    assert body["profile"]["rows"] == 400

    datasets = client.get(f"{API}/datasets/").json()
    assert datasets["count"] == 1
    assert datasets["results"][0]["latest_version"]["status"] == "validated"
    dataset = client.get(f"{API}/datasets/{version['dataset']}/").json()
    assert dataset["name"] == "Applications"
    assert dataset["versions"][0]["profile"]["rows"] == 400


def test_new_version_of_an_existing_dataset(client, finance_csv, validated_version):
    response = post_upload(client, finance_csv, dataset=validated_version.dataset_id)
    assert response.status_code == 201
    assert response.json()["number"] == 2
    assert response.json()["dataset"] == validated_version.dataset_id


def test_unreadable_upload_is_400_with_the_report(client):
    response = post_upload(client, b"")
    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["code"] == "empty"
    version = DatasetVersion.objects.get(pk=body["dataset_version"])
    assert version.status == "rejected"


def test_oversize_upload_is_400(client, finance_csv, settings):
    settings.TESSERA_MAX_UPLOAD_BYTES = 100
    response = post_upload(client, finance_csv)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "file_too_large"


def test_upload_form_errors_are_400(client):
    response = client.post(f"{API}/datasets/", {"vertical": "finance"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()


def test_mapping_that_does_not_fit_is_400_with_the_report(client, finance_csv):
    version = post_upload(client, finance_csv).json()
    response = client.post(f"{API}/dataset-versions/{version['id']}/mapping/",
                           {"target": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]
    again = client.post(f"{API}/dataset-versions/{version['id']}/mapping/",
                        {"target": "default"}, format="json")
    assert again.status_code == 400  # a version is decided once


def test_start_inspect_and_cancel_a_run(
    client, validated_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(
            f"{API}/runs/",
            {"dataset_version": validated_version.pk,
             "privacy": {"enabled": True, "target_epsilon": 2.0}, "seed": 7,
             "config": {"epochs": 2}},
            format="json",
        )
    assert response.status_code == 201, response.json()
    run = response.json()
    assert len(callbacks) == 1  # enqueued when the transaction commits
    assert run["status"] == "queued"
    assert run["privacy_requested"]["target_epsilon"] == 2.0
    assert run["config"] == {"epochs": 2, "seed": 7}
    assert TrainingRun.objects.get(pk=run["id"]).task_id

    detail = client.get(f"{API}/runs/{run['id']}/").json()
    assert set(detail["progress"]) == {"stage", "epoch", "total_epochs", "percent", "loss",
                                       "val_metric", "epsilon_spent", "history"}
    assert detail["model_version"] is None
    assert client.get(f"{API}/runs/").json()["count"] == 1

    cancelled = client.post(f"{API}/runs/{run['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"{API}/runs/{run['id']}/cancel/").status_code == 400


@pytest.mark.parametrize(
    "body",
    [{"config": {"no_such_option": 1}}, {"privacy": {"target_epsilon": -1}},
     {"privacy": {"delta": 2}}],
    ids=["unknown-option", "negative-epsilon", "delta-above-one"],
)
def test_bad_run_options_are_400(client, validated_version, body):
    response = client.post(f"{API}/runs/", {"dataset_version": validated_version.pk, **body},
                           format="json")
    assert response.status_code == 400
    assert not TrainingRun.objects.exists()


def test_untrainable_version_is_400(client, finance_csv):
    pending = post_upload(client, finance_csv).json()
    response = client.post(f"{API}/runs/", {"dataset_version": pending["id"]}, format="json")
    assert response.status_code == 400
    assert "cannot be trained" in response.json()["detail"]


def test_models_list_detail_and_report(client, pending_model):
    listing = client.get(f"{API}/models/").json()
    assert [m["id"] for m in listing["results"]] == [pending_model.pk]
    detail = client.get(f"{API}/models/{pending_model.pk}/").json()
    assert detail["status"] == "pending_review" and detail["fairness_passed"] is False
    report = client.get(f"{API}/models/{pending_model.pk}/report/").json()
    assert report["fairness"]["report"]["foreign_worker"]["passed"] is False
    assert report["run"]["privacy"]["epsilon"] == 2.9
    assert report["baseline"]["name"] == "logistic_regression"
    assert report["reviews"] == []


def test_only_reviewers_review(api_client, analyst, reviewer, pending_model):
    url = f"{API}/models/{pending_model.pk}/review/"
    denied = api_client(analyst).post(url, {"decision": "approve", "comment": "ok"})
    assert denied.status_code == 403

    blank = api_client(reviewer).post(url, {"decision": "approve", "comment": " "})
    assert blank.status_code == 400
    response = api_client(reviewer).post(url, {"decision": "approve", "comment": "Fine."})
    assert response.status_code == 201, response.json()
    assert response.json()["reviewer"] == "rita"
    pending_model.refresh_from_db()
    assert pending_model.status == ModelVersion.Status.APPROVED
    again = api_client(reviewer).post(url, {"decision": "reject", "comment": "changed mind"})
    assert again.status_code == 400
    report = api_client(analyst).get(f"{API}/models/{pending_model.pk}/report/").json()
    assert report["reviews"][0]["comment"] == "Fine."


def test_schema_generates_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json",
                 stdout=out)
    assert '"/api/v1/runs/{id}/cancel/"' in out.getvalue()


def test_docs_page_serves_its_assets_locally(client):
    response = client.get(f"{API}/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    assert client.get(f"{API}/schema/").status_code == 200
