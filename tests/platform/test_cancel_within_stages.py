"""A run cancelled inside a long stage stops there, and the ledger is charged what it spent.

A text run cancelled while its encoder runs over the rows: the next batch is not encoded,
the run ends ``cancelled`` with the stage it was in, and nothing is charged (no private
step was taken). A tabular run cancelled during its fairness audits: charged its model's
accounted spend, not the whole target.

In process through the cancel service, counting batches; and end to end through the
API's cancel endpoint with a real Celery worker, whose encoder is slowed (a test-only
``sitecustomize`` in the worker's path sleeps in each batch) so the cancel lands while it
encodes, deterministically.
"""

from __future__ import annotations

import io
import math
import os

import pytest

from audits.models import AuditLogEntry
from governance.models import LedgerEntry
from tests.conftest import FAST_TRAINING, ROOT, csv_upload
from tests.support.worker import celery_worker, wait_for, wait_for_run
from training.models import TrainingRun
from training.progress import CancelCheck
from training.services import cancel_run, execute_run, start_run

API = "/api/v1"
WAIT_S = 240


def text_version(user, n_rows: int):
    """A validated complaint-sentiment dataset (a text problem) of ``n_rows`` narratives."""
    from ingestion.services import confirm_mapping, upload_dataset
    from verticals.registry import get_problem

    problem = get_problem("finance", "complaint_sentiment")
    buffer = io.StringIO()
    problem.sample_data(n_rows, 0).to_csv(buffer, index=False)
    version = upload_dataset(user=user, vertical="finance", problem="complaint_sentiment",
                             file=csv_upload(buffer.getvalue().encode(), "complaints.csv"),
                             name=f"Complaints {n_rows}")
    version = confirm_mapping(version=version, user=user, mapping=problem.sample_mapping)
    assert version.status == "validated", version.errors
    return version


def cancelled_entry(run: TrainingRun) -> AuditLogEntry:
    return AuditLogEntry.objects.get(action="run.cancelled", object_type="training.trainingrun",
                                     object_id=str(run.pk))


@pytest.mark.django_db
def test_a_run_cancelled_while_encoding_encodes_no_further_batch(analyst, monkeypatch):
    from ml_core.families.text import caches
    from ml_core.models import text_encoder as te

    version = text_version(analyst, 200)
    run = start_run(version=version, user=analyst, target_epsilon=8.0,
                    config={"epochs": 1, "max_length": 24}, enqueue=False)
    caches._STATE_CACHE.clear()
    monkeypatch.setattr(caches, "ENCODE_BATCH", 16)  # 13 batches
    # Every ask reads the database (no 0.5 s memo), so the count below is exact.
    monkeypatch.setitem(CancelCheck.__init__.__kwdefaults__, "interval_s", 0.0)
    encoded: list[int] = []
    original = te.FrozenLower.forward

    def forward(self, input_ids, mask):
        if TrainingRun.objects.get(pk=run.pk).stage == "encoding":
            encoded.append(len(input_ids))
            if len(encoded) == 3:  # the analyst cancels while the third batch is encoded
                cancel_run(run=run, user=analyst)
        return original(self, input_ids, mask)

    monkeypatch.setattr(te.FrozenLower, "forward", forward)
    execute_run(run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert len(encoded) == 3  # of 13: none after the cancel
    assert cancelled_entry(run).detail["stage"] == "encoding"
    assert run.privacy == {} and run.epsilon_spent is None
    assert not LedgerEntry.objects.filter(run=run).exists()


def encoded(log) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.django_db
def test_a_run_cancelled_during_its_audits_is_charged_what_its_model_spent(
        validated_version, analyst, monkeypatch):
    from ml_core import fairness

    run = start_run(version=validated_version, user=analyst, target_epsilon=3.0,
                    config=dict(FAST_TRAINING), enqueue=False)
    monkeypatch.setitem(CancelCheck.__init__.__kwdefaults__, "interval_s", 0.0)
    audited: list[str] = []
    original = fairness._audit_attribute

    def audit_attribute(**kwargs):
        audited.append("attribute")
        if len(audited) == 1:  # the analyst cancels during the first attribute's audit
            cancel_run(run=run, user=analyst)
        return original(**kwargs)

    monkeypatch.setattr(fairness, "_audit_attribute", audit_attribute)
    execute_run(run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert audited == ["attribute"]  # no further attribute was audited
    assert cancelled_entry(run).detail["stage"] == "auditing"
    entry = LedgerEntry.objects.get(run=run)
    assert entry.basis == LedgerEntry.Basis.ACCOUNTED
    assert entry.epsilon == pytest.approx(run.privacy["epsilon"]) and 0 < entry.epsilon <= 3.0
    assert entry.steps == run.privacy["steps"] > 0


SLOW_ENCODER = '''
import os, time
from pathlib import Path

log = os.environ.get("TESSERA_TEST_ENCODER_LOG")
if log:
    from ml_core.families.text import caches
    from ml_core.models import text_encoder as te

    caches.ENCODE_BATCH = {batch}
    original = te.FrozenLower.forward

    def forward(self, input_ids, mask):
        with Path(log).open("a") as handle:
            handle.write(f"{{len(input_ids)}}\\n")
        time.sleep({pause})
        return original(self, input_ids, mask)

    te.FrozenLower.forward = forward
'''


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_cancel_endpoint_stops_a_worker_while_it_encodes(analyst, api_client, tmp_path):
    rows, batch = 400, 8
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_ENCODER.format(batch=batch, pause=0.2))
    batches = tmp_path / "encoded.txt"
    log = tmp_path / "worker.log"
    version = text_version(analyst, rows)
    client = api_client(analyst)
    env = {"PYTHONPATH": os.pathsep.join([str(hook), str(ROOT), str(ROOT / "platform")]),
           "TESSERA_TEST_ENCODER_LOG": str(batches)}
    with celery_worker(log=log, env=env):
        response = client.post(f"{API}/runs/", {
            "dataset_version": version.pk, "privacy": {"enabled": True, "target_epsilon": 8.0},
            "config": {"epochs": 1, "max_length": 24}}, format="json")
        assert response.status_code == 201, response.json()
        run = TrainingRun.objects.get(pk=response.json()["id"])
        wait_for_run(run, timeout=WAIT_S, log=log,
                     until=lambda current: current.stage == "encoding" or current.is_terminal,
                     interval=0.1)
        assert run.stage == "encoding", (run.status, run.error)
        # The reference text's one pass, then two batches of rows: it is mid-way.
        wait_for(lambda: len(encoded(batches)) >= 3, timeout=WAIT_S, log=log,
                 what="the encoder's first batches", interval=0.05)
        assert client.post(f"{API}/runs/{run.pk}/cancel/").status_code == 200
        wait_for_run(run, timeout=WAIT_S, log=log)

    assert run.status == TrainingRun.Status.CANCELLED, run.error
    assert cancelled_entry(run).detail["stage"] == "encoding"
    assert run.privacy == {} and not LedgerEntry.objects.filter(run=run).exists()
    # Far fewer batches of rows than planned: it stopped while encoding.
    planned = math.ceil(rows / batch)
    done = len(encoded(batches)) - 1
    assert 2 <= done < planned, (done, planned)
