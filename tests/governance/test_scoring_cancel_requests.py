"""A user cancels a batch scoring job through the API or the web, as a run is cancelled: a
queued job at once, a running one before its next batch (what it scored is discarded, no
file written); another organisation's job is not found, a finished one is refused.

The job runs in this process through the worker's own path (``score_batch``); the model's
forward pass is the edge replaced here, so the cancel check between batches is the one the
service's flag drives (training.progress.CancelCheck reading ``cancel_requested``).
"""

from __future__ import annotations

import pandas as pd
import pytest
from django.core.exceptions import PermissionDenied

from audits.models import AuditLogEntry
from governance import scoring
from governance.models import ScoringJob
from governance.tasks import score_batch
from tests.conftest import csv_upload, finance_frame
from training.models import ModelVersion
from training.progress import CancelCheck

pytestmark = pytest.mark.django_db
API = "/api/v1/scoring-jobs"
BATCH = 10


@pytest.fixture
def serving(pending_model):
    ModelVersion.objects.filter(pk=pending_model.pk).update(
        status=ModelVersion.Status.APPROVED)
    pending_model.refresh_from_db()
    return pending_model


@pytest.fixture
def forward(monkeypatch):
    """The model's forward pass, counted; ``forward.during(n, action)`` runs ``action``
    while the n-th batch is scored (the user's click arrives then)."""

    class Forward:
        def __init__(self):
            self.batches: list[int] = []
            self.actions: dict = {}

        def during(self, n, action):
            self.actions[n] = action

        def __call__(self, loaded, chunk: pd.DataFrame) -> pd.DataFrame:
            self.batches.append(len(chunk))
            if len(self.batches) in self.actions:
                self.actions[len(self.batches)]()
            return pd.DataFrame({"score": 0.5, "prediction": 0}, index=chunk.index)

    fake = Forward()
    monkeypatch.setattr(scoring, "loaded_model", lambda model_version, mode=None: object())
    monkeypatch.setattr(scoring, "input_schema", lambda loaded: {"income": "numeric"})
    monkeypatch.setattr(scoring, "predict_decisions", fake)
    monkeypatch.setitem(scoring.score_in_batches.__kwdefaults__, "batch_rows", BATCH)
    # Every ask reads the database (no 0.5 s memo), so the batch count below is exact.
    monkeypatch.setitem(CancelCheck.__init__.__kwdefaults__, "interval_s", 0.0)
    return fake


def start(model, user, rows: int = 100) -> ScoringJob:
    frame = finance_frame(rows, seed=3).drop(columns=["default"])
    return scoring.start_scoring_job(model_version=model, user=user, file=csv_upload(
        frame.to_csv(index=False).encode(), name="batch.csv"))


def test_a_running_job_cancelled_through_the_api_scores_no_further_batch(
    serving, analyst, api_client, forward
):
    job = start(serving, analyst)
    answers = []
    forward.during(3, lambda: answers.append(
        api_client(analyst).post(f"{API}/{job.pk}/cancel/")))
    score_batch.apply(args=[job.pk])  # the Celery task, in this process

    assert answers[0].status_code == 200, answers[0].content
    assert answers[0].json()["status"] == "running"
    assert answers[0].json()["cancel_requested"] is True
    job.refresh_from_db()
    assert forward.batches == [BATCH] * 3  # of 10 batches: none after the cancel
    assert job.status == ScoringJob.Status.CANCELLED and job.finished_at is not None
    assert job.rows_done == 3 * BATCH and job.output_path == ""
    assert not scoring.output_path(job).exists()  # what it scored is discarded
    assert AuditLogEntry.objects.filter(action="scoring.cancel_requested",
                                        object_id=str(job.pk), actor=analyst).count() == 1
    # Finished now: a second cancel is refused with the reason.
    again = api_client(analyst).post(f"{API}/{job.pk}/cancel/")
    assert again.status_code == 400 and "already cancelled" in again.json()["detail"]
    detail = api_client(analyst).get(f"{API}/{job.pk}/").json()
    assert detail["status"] == "cancelled" and detail["rows_done"] == 3 * BATCH


def test_a_queued_job_cancelled_on_its_page_never_scores(serving, analyst, reviewer, client,
                                                         forward):
    job = start(serving, analyst)
    client.force_login(reviewer)  # any member of the organisation, as for starting one
    page = client.get(f"/governance/scoring/{job.pk}/").content.decode()
    assert f'action="/governance/scoring/{job.pk}/cancel/"' in page
    assert "Cancel scoring" in page and "csrfmiddlewaretoken" in page
    response = client.post(f"/governance/scoring/{job.pk}/cancel/", follow=True)
    assert response.redirect_chain[-1][0] == f"/governance/scoring/{job.pk}/"
    assert "Scoring job cancelled." in response.content.decode()
    job.refresh_from_db()
    assert job.status == ScoringJob.Status.CANCELLED and job.cancel_requested
    score_batch.apply(args=[job.pk])  # its message, delivered after the cancel: no-op
    job.refresh_from_db()
    assert forward.batches == [] and job.status == ScoringJob.Status.CANCELLED
    assert AuditLogEntry.objects.filter(action="scoring.cancelled",
                                        object_id=str(job.pk)).count() == 1
    page = client.get(f"/governance/scoring/{job.pk}/").content.decode()
    assert "Cancel scoring" not in page and "Cancelled after 0 of 100 rows" in page


def test_another_organisations_job_is_not_found_and_left_alone(
    serving, analyst, other_analyst, other_admin, api_client, client, forward
):
    job = start(serving, analyst)
    assert api_client(other_admin).post(f"{API}/{job.pk}/cancel/").status_code == 404
    client.force_login(other_analyst)
    assert client.post(f"/governance/scoring/{job.pk}/cancel/").status_code == 404
    assert client.get(f"/governance/scoring/{job.pk}/cancel/").status_code == 405
    with pytest.raises(PermissionDenied):  # the service checks on its own too
        scoring.cancel_scoring_job(job=job, user=other_admin)
    job.refresh_from_db()
    assert job.status == ScoringJob.Status.QUEUED and not job.cancel_requested
    assert not AuditLogEntry.objects.filter(action__startswith="scoring.cancel").exists()
    assert api_client().post(f"{API}/{job.pk}/cancel/").status_code == 401


def test_a_finished_job_cannot_be_cancelled(serving, analyst, api_client, client, forward):
    job = start(serving, analyst, rows=15)
    score_batch.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == ScoringJob.Status.SUCCEEDED and forward.batches[:2] == [10, 5]
    answer = api_client(analyst).post(f"{API}/{job.pk}/cancel/")
    assert answer.status_code == 400
    assert answer.json()["detail"] == f"scoring job {job.pk} has already succeeded"
    client.force_login(analyst)
    response = client.post(f"/governance/scoring/{job.pk}/cancel/", follow=True)
    assert "has already succeeded" in response.content.decode()
    job.refresh_from_db()
    assert job.status == ScoringJob.Status.SUCCEEDED and not job.cancel_requested


def test_the_cancel_endpoint_is_in_the_openapi_schema(api_client, analyst):
    import yaml

    schema = yaml.safe_load(api_client(analyst).get("/api/v1/schema/").content)
    operation = schema["paths"]["/api/v1/scoring-jobs/{id}/cancel/"]["post"]
    assert {"200", "400"} <= set(operation["responses"])
    assert "/api/v1/scoring-jobs/{id}/" in schema["paths"]
