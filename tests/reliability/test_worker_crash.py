"""A worker killed (SIGKILL) in the middle of a private training: another worker takes the
run over once its lease expires, resumes it from its last epoch checkpoint, and ends with
exactly what an uninterrupted run of the same seed gives (metrics, epsilon, history, the
same weights). The ledger charges the steps of that one trajectory, no more, no fewer.

The real path on either broker: kombu's filesystem transport deleted the message when the
first worker took it, and Redis keeps it unacknowledged (handed back after the visibility
timeout, short here); in both cases the new worker's recovery re-sends the run when its
lease has expired, and whichever delivery comes first takes it over.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audits.models import AuditLogEntry
from governance.models import LedgerEntry
from ml_core.artifacts import WEIGHTS_FILE
from ml_core.checkpoints import checkpoint_epochs
from tests.support.worker import FAST_RECOVERY, celery_worker, kill, wait_for_run
from training.models import TrainingRun
from training.services import checkpoint_dir, execute_run, start_run

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Long enough (private epochs of about 30 Poisson batches) for the kill to land mid-way;
# no early stopping, so both runs take every planned step.
CONFIG = {"epochs": 16, "batch_size": 32, "patience": 16, "seed": 11,
          "hidden_sizes": [32, 16]}
EPSILON = 2.0
WAIT_S = 300


def weights(run: TrainingRun) -> dict[str, torch.Tensor]:
    return torch.load(Path(run.artifact_path) / WEIGHTS_FILE, weights_only=True)


def test_a_killed_worker_s_run_resumes_where_it_stopped_with_the_same_result(
    finance_version, analyst, tmp_path
):
    version = finance_version(analyst, n_rows=1500)
    # The uninterrupted reference: same data, same seed, trained in this process.
    reference = start_run(version=version, user=analyst, target_epsilon=EPSILON,
                          config=dict(CONFIG), enqueue=False)
    execute_run(reference.pk)
    reference.refresh_from_db()
    assert reference.status == TrainingRun.Status.SUCCEEDED, reference.error

    first_log, second_log = tmp_path / "first-worker.log", tmp_path / "second-worker.log"
    with celery_worker(log=first_log, env=FAST_RECOVERY) as first:
        run = start_run(version=version, user=analyst, target_epsilon=EPSILON,
                        config=dict(CONFIG))
        wait_for_run(run, timeout=WAIT_S, log=first_log, interval=0.05,
                     until=lambda r: r.stage == "training" and r.epoch >= 2)
        kill(first)
    run.refresh_from_db()
    killed_at = (run.stage, run.epoch)
    assert run.status == TrainingRun.Status.RUNNING  # the dead worker left it running
    saved = checkpoint_epochs(checkpoint_dir(run.pk))
    assert 1 <= saved["training"] < CONFIG["epochs"], (saved, killed_at)

    with celery_worker(log=second_log, env=FAST_RECOVERY, purge=False):
        wait_for_run(run, timeout=WAIT_S, log=second_log)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.attempt == 2
    resumed = AuditLogEntry.objects.get(action="run.resumed", object_id=str(run.pk))
    assert resumed.detail["attempt"] == 2
    assert resumed.detail["checkpoint_epochs"]["training"] >= saved["training"]
    print(f"killed at {killed_at}; resumed from the checkpoint of epoch "
          f"{resumed.detail['checkpoint_epochs']['training']} of {CONFIG['epochs']}")
    assert not checkpoint_dir(run.pk).exists()  # removed once the run ended

    # The same result as the uninterrupted run.
    assert run.metrics == reference.metrics
    assert run.privacy == reference.privacy
    assert run.history == reference.history
    assert run.fairness == reference.fairness
    ours, theirs = weights(run), weights(reference)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    assert run.model_version.artifact_sha256 == reference.model_version.artifact_sha256

    # The ledger charged the accountant's steps of the whole trajectory once: the replayed
    # part of the killed epoch is not counted twice, the epochs before the kill not lost.
    planned = run.privacy["planned_steps"]
    assert run.privacy["steps"] == planned == reference.privacy["steps"]
    entry = LedgerEntry.objects.get(run=run)
    assert entry.basis == LedgerEntry.Basis.ACCOUNTED
    assert entry.steps == planned
    assert entry.epsilon == pytest.approx(reference.privacy["epsilon"], abs=0)
    assert entry.epsilon == LedgerEntry.objects.get(run=reference).epsilon
