"""Batch scoring: a CSV scored by a Celery job with progress, downloaded with formula-like
cells escaped."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from governance.models import ScoringJob
from governance.scoring import NotServing, escape_cell, start_scoring_job
from governance.tasks import score_batch
from ml_core.artifacts import load_model, predict_proba
from tests.conftest import csv_upload, finance_frame


@pytest.mark.parametrize("cell", ["=1+1", "+33", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_escaped(cell):
    assert escape_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["plain", "", "a=b", -5, 3.5, None])
def test_other_cells_are_left_alone(cell):
    assert escape_cell(cell) == cell


def upload(frame):
    return csv_upload(frame.to_csv(index=False).encode(), name="applicants.csv")


@pytest.mark.django_db
@pytest.mark.slow
def test_a_scoring_job_scores_and_escapes(
    trained_model, approve, analyst, client, django_capture_on_commit_callbacks
):
    frame = finance_frame(30, seed=9).drop(columns=["default"])
    frame["note"] = ["=HYPERLINK(\"http://x\")", "+1", "-1", "@a", "ok"] + ["fine"] * 25
    with pytest.raises(NotServing):
        start_scoring_job(model_version=trained_model, user=analyst, file=upload(frame))
    approve(trained_model)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = start_scoring_job(model_version=trained_model, user=analyst, file=upload(frame))
    assert len(callbacks) == 1 and job.status == "queued" and job.rows_total == 30

    score_batch.apply(args=[job.pk])  # the Celery task, run in this process
    job.refresh_from_db()
    assert job.status == "succeeded", job.errors
    assert job.rows_done == 30 and job.progress_percent == 100

    client.force_login(analyst)
    assert "Download" in client.get(f"/governance/scoring/{job.pk}/").content.decode()
    response = client.get(f"/governance/scoring/{job.pk}/download/")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["note"] for r in rows[:5]] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-1", "'@a",
                                             "ok"]
    expected = predict_proba(load_model(trained_model.run.artifact_path), frame)
    assert np.allclose([float(r["score"]) for r in rows], expected, atol=1e-6)


@pytest.mark.django_db
@pytest.mark.slow
def test_bad_rows_fail_the_job_with_the_rows_named(trained_model, approve, analyst,
                                                   other_analyst, client):
    approve(trained_model)
    frame = finance_frame(10, seed=2).drop(columns=["default"])
    frame["income"] = frame["income"].astype(object)
    frame.loc[3, "income"] = "unknown"
    job = start_scoring_job(model_version=trained_model, user=analyst, file=upload(frame))
    score_batch.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == ScoringJob.Status.FAILED
    assert job.errors[0]["column"] == "income" and job.errors[0]["rows"] == [4]
    client.force_login(other_analyst)
    assert client.get(f"/governance/scoring/{job.pk}/").status_code == 404
