"""``manage.py pipeline``: one table in, one JSON object out, through the same services."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingestion.models import DatasetVersion
from tests.conftest import ROOT, SHARED_DATA, database_url, finance_frame
from tests.conftest import call_pipeline as pipeline
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

FINANCE = ["--vertical", "finance", "--problem", "credit_risk"]
DEMO_MAPPING = ["--target", "default", "--sensitive", "sex", "--sensitive", "age",
                "--sensitive", "foreign_worker", "--exclude", "personal_status",
                "--exclude", "applicant_id"]


@pytest.fixture
def demo_file(tmp_path) -> Path:
    path = tmp_path / "applications.csv"
    finance_frame(300, seed=3).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_private_run_inline_with_predictions(demo_file, tmp_path):
    predictions = tmp_path / "out" / "predictions.csv"

    code, body = pipeline(demo_file, *FINANCE, *DEMO_MAPPING, "--epsilon", "3", "--epochs", "2",
                          "--inline", "--json", "--predictions-out", predictions)

    assert code == 0, body
    assert body["dataset"]["sha256"] == hashlib.sha256(demo_file.read_bytes()).hexdigest()
    assert body["dataset"]["profile"]["rows"] == 300
    run = body["run"]
    assert run["status"] == "succeeded"
    assert set(run["metrics"]) >= {"roc_auc", "accuracy"}
    assert set(run["privacy"]) >= {"epsilon", "delta", "noise_multiplier", "sample_rate",
                                   "steps", "accountant"}
    assert 0 < run["privacy"]["epsilon"] <= 3 + 1e-6
    assert set(run["fairness"]) == {"sex", "age", "foreign_worker"}
    for report in run["fairness"].values():
        assert set(report) == {"by_group", "disparities", "passed"}
    assert body["model_version"]["status"] == "pending_review"
    assert TrainingRun.objects.get(pk=run["id"]).created_by.username == "pipeline"

    with predictions.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["row_id", "y_true", "y_score", "y_pred", "sex", "age",
                             "foreign_worker"]
    assert len(rows) == round(300 * 0.2)  # the held-out split
    assert {row["age"] for row in rows} <= {"<25", "25-34", "35-49", "50-64", "65+"}
    assert {row["y_pred"] for row in rows} <= {"0", "1"}


@pytest.mark.slow
def test_non_private_run(demo_file):
    code, body = pipeline(demo_file, *FINANCE, "--target", "default", "--sensitive", "sex",
                          "--no-privacy", "--epochs", "2", "--inline", "--json")

    assert code == 0, body
    mapping = DatasetVersion.objects.get(pk=body["dataset"]["version_id"]).mapping
    assert mapping["id"] == "applicant_id"  # the suggested id, not a feature
    assert "applicant_id" not in mapping["features"]
    assert body["run"]["privacy"]["enabled"] is False
    assert body["run"]["privacy"]["epsilon"] is None


def test_unreadable_file_exits_1_with_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")

    code, body = pipeline(empty, *FINANCE, "--target", "default", "--inline", "--json")

    assert code == 1
    assert body["errors"][0]["code"] == "empty" and body["errors"][0]["message"]
    assert not TrainingRun.objects.exists()


def test_mapping_errors_exit_1_with_errors(demo_file):
    code, body = pipeline(demo_file, *FINANCE, "--target", "no_such_column", "--inline", "--json")

    assert code == 1
    assert body["errors"] and all(e["message"] for e in body["errors"])
    assert body["dataset"]["status"] == "rejected"


def test_missing_file_exits_1(tmp_path):
    code, body = pipeline(tmp_path / "nope.csv", *FINANCE, "--target", "default", "--json")
    assert code == 1 and body["errors"][0]["code"] == "not_found"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_stdout_is_only_the_json_object(demo_file, settings):
    """As a real process on the test database: logs and library chatter go to stderr."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "TESSERA_UPLOAD_DIR": str(settings.TESSERA_UPLOAD_DIR),
        "TESSERA_ARTIFACT_DIR": str(settings.TESSERA_ARTIFACT_DIR),
        "LOG_LEVEL": "DEBUG",
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "pipeline", str(demo_file), *FINANCE,
         *DEMO_MAPPING, "--no-privacy", "--epochs", "1", "--inline", "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    body = json.loads(done.stdout)
    assert body["run"]["status"] == "succeeded"
    assert TrainingRun.objects.get(pk=body["run"]["id"]).status == "succeeded"


GERMAN = SHARED_DATA / "german.data"


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not GERMAN.is_file(), reason="../shared/data/german.data is absent")
def test_german_credit_data(tmp_path):
    predictions = tmp_path / "german-predictions.csv"

    code, body = pipeline(
        GERMAN, *FINANCE, "--no-header", "--target", "column_21", "--sensitive", "column_9",
        "--sensitive", "column_13", "--epsilon", "3", "--epochs", "5", "--inline", "--json",
        "--predictions-out", predictions,
    )

    assert code == 0, body
    assert body["dataset"]["profile"]["rows"] == 1000
    run = body["run"]
    assert run["status"] == "succeeded"
    assert 0 < run["privacy"]["epsilon"] <= 3 + 1e-6
    assert set(run["fairness"]) == {"column_9", "column_13"}
    with predictions.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200
    assert {"column_9", "column_13"} <= set(rows[0])
    # Age (column_13) is numeric: audited in bands, not raw years.
    assert len({row["column_13"] for row in rows}) <= 6
