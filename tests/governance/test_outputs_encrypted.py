"""Outputs computed from personal data are encrypted at rest with the uploads' keys and
rotation (issue 16, finding 3): each run's predictions.csv and each batch-scoring result;
decrypted only for an authorised download or reader."""

from __future__ import annotations

import csv
import io
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from governance.scoring import start_scoring_job
from governance.tasks import score_batch
from ingestion.storage import MAGIC, derived_key
from tests.conftest import csv_upload, finance_frame
from training.predictions import predictions_path, read_predictions

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

OLD, NEW = (Fernet.generate_key().decode() for _ in range(2))


def _private_to_owner(path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_predictions_and_scored_files_are_encrypted_and_rotate(
        settings, validated_version, analyst, other_analyst, approve, client):
    from training.services import execute_run, start_run

    # The fixture's upload was stored under the key derived from SECRET_KEY.
    derived = derived_key(settings.SECRET_KEY)
    settings.TESSERA_FERNET_KEYS = [OLD, derived]
    run = start_run(version=validated_version, user=analyst, config={"epochs": 2})
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    path = predictions_path(run.artifact_path)
    blob = path.read_bytes()
    assert blob.startswith(MAGIC) and b"row_id" not in blob and _private_to_owner(path)
    predictions = read_predictions(run.artifact_path)
    assert {"row_id", "y_true"} <= set(predictions.columns) and len(predictions) > 0

    model_version = run.model_version
    approve(model_version)
    frame = finance_frame(20, seed=4).drop(columns=["default"])
    job = start_scoring_job(model_version=model_version, user=analyst, file=csv_upload(
        frame.to_csv(index=False).encode(), name="batch.csv"))
    score_batch.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == "succeeded", job.errors
    scored = job.output_path
    blob = Path(scored).read_bytes()
    assert blob.startswith(MAGIC) and b"income" not in blob and _private_to_owner(Path(scored))

    # Rotation: the new key first, then rotate_keys re-encrypts outputs too.
    settings.TESSERA_FERNET_KEYS = [NEW, OLD, derived]
    call_command("rotate_keys", stdout=io.StringIO())
    settings.TESSERA_FERNET_KEYS = [NEW]
    assert len(read_predictions(run.artifact_path)) == len(predictions)

    # Decrypted only for the organisation's download, never cached.
    client.force_login(other_analyst)
    assert client.get(f"/governance/scoring/{job.pk}/download/").status_code == 404
    client.force_login(analyst)
    response = client.get(f"/governance/scoring/{job.pk}/download/")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 20 and "income" in rows[0]
