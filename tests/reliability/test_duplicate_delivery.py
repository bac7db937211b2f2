"""The same message delivered twice starts one training; a delivery tells a duplicate (the
first attempt is alive: its lease is fresh) from a redelivery after that attempt died (its
lease expired: take the run over)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audits.models import AuditLogEntry
from governance.models import LedgerEntry
from observability.models import WorkerHeartbeat
from tests.conftest import FAST_TRAINING
from tests.support.worker import FAST_RECOVERY, celery_worker, wait_for, wait_for_run
from training.leases import claim_run, finish_run
from training.models import ModelVersion, TrainingRun
from training.services import execute_run, start_run

WAIT_S = 240


def actions(run) -> list[str]:
    return sorted(AuditLogEntry.objects.filter(object_id=str(run.pk), object_type="training"
                                               ".trainingrun").values_list("action", flat=True))


def assert_trained_once(run) -> None:
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.attempt == 1  # claimed once, never taken over
    assert ModelVersion.objects.filter(run=run).count() == 1
    assert LedgerEntry.objects.filter(run=run).count() == 1
    assert LedgerEntry.objects.get(run=run).steps == run.privacy["steps"] > 0
    assert actions(run) == ["ledger.charged", "run.started", "run.succeeded"]


@pytest.mark.django_db
def test_a_live_attempt_keeps_its_run_and_a_dead_one_is_taken_over(validated_version, analyst,
                                                                  settings):
    run = start_run(version=validated_version, user=analyst, config=dict(FAST_TRAINING),
                    enqueue=False)
    first = claim_run(run.pk)
    assert first is not None and not first.resumed and first.attempt == 1
    assert claim_run(run.pk) is None  # a duplicate while the first attempt is alive

    # The first attempt stops renewing its lease (killed): the next delivery takes over.
    TrainingRun.objects.filter(pk=run.pk).update(
        stage="training", lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = claim_run(run.pk)
    assert second is not None and second.resumed and second.attempt == 2
    assert second.earlier_stage == "training" and second.token != first.token
    assert claim_run(run.pk) is None

    # The presumed-dead attempt, should it wake up, can no longer end the run.
    run.refresh_from_db()
    assert not finish_run(run, first, TrainingRun.Status.FAILED, action="run.failed", error="x")
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING and run.lease_token == second.token

    # A run whose attempts keep dying fails, charged as a failure during training.
    settings.TESSERA_RUN_MAX_ATTEMPTS = 2
    TrainingRun.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert claim_run(run.pk) is None
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "stopped 2 times" in run.error and "'training'" in run.error
    assert LedgerEntry.objects.get(run=run).basis == LedgerEntry.Basis.UPPER_BOUND


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_threads_racing_on_one_run_train_it_once(validated_version, analyst):
    run = start_run(version=validated_version, user=analyst, target_epsilon=2.0,
                    config=dict(FAST_TRAINING), enqueue=False)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=30)
            execute_run(run.pk)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_S)
    assert not errors
    assert_trained_once(run)


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_one_message_delivered_to_two_workers_trains_once(validated_version, analyst,
                                                          tmp_path):
    from training.tasks import train_run

    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    # Epochs long enough for the second delivery to arrive while the first one trains.
    config = {**FAST_TRAINING, "epochs": 8, "batch_size": 16}
    with celery_worker(log=logs[0]), celery_worker(log=logs[1], purge=False):
        wait_for(lambda: WorkerHeartbeat.objects.count() == 2, timeout=WAIT_S, log=logs[1],
                 what="both workers to start")
        run = start_run(version=validated_version, user=analyst, target_epsilon=2.0,
                        config=config, enqueue=False)
        TrainingRun.objects.filter(pk=run.pk).update(task_id="duplicated-message")
        # The same message twice, as a broker's redelivery sends it: each worker takes one.
        for _ in range(2):
            train_run.apply_async(args=[run.pk], queue="training", task_id="duplicated-message")
        wait_for_run(run, timeout=WAIT_S, log=logs[0])
        both = lambda: all("duplicated-message] succeeded" in log.read_text()  # noqa: E731
                           for log in logs)
        wait_for(both, timeout=WAIT_S, log=logs[1], what="both deliveries to be handled")
    assert_trained_once(run)
    skipped = [log for log in logs if "held by a live attempt" in log.read_text()]
    assert len(skipped) == 1  # one worker trained, the other found the run held


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_run_longer_than_the_visibility_timeout_is_not_started_twice(
    finance_version, analyst, tmp_path, settings
):
    """Redis hands an unacknowledged message to another worker after the visibility
    timeout (2 s here) although the first worker still trains it: the lease (10 s, renewed)
    makes that delivery a no-op."""
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("CELERY_BROKER_URL is not Redis")
    version = finance_version(analyst, n_rows=1500)
    env = {**FAST_RECOVERY, "CELERY_VISIBILITY_TIMEOUT": "2", "TESSERA_RUN_LEASE_S": "10"}
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    with celery_worker(log=logs[0], env=env), celery_worker(log=logs[1], env=env,
                                                            purge=False):
        wait_for(lambda: WorkerHeartbeat.objects.count() == 2, timeout=WAIT_S, log=logs[1],
                 what="both workers to start")
        run = start_run(version=version, user=analyst, target_epsilon=2.0,
                        config={**FAST_TRAINING, "epochs": 20, "batch_size": 16})
        # The idle worker takes the message back from Redis once it is older than the
        # visibility timeout, while the other one is still training.
        wait_for(lambda: any("held by a live attempt" in log.read_text() for log in logs),
                 timeout=WAIT_S, log=logs[1], what="the redelivery")
        run.refresh_from_db()
        assert run.status == TrainingRun.Status.RUNNING
        wait_for_run(run, timeout=WAIT_S, log=logs[0])
    assert_trained_once(run)
    received = [log for log in logs if f"train_run[{run.task_id}] received" in log.read_text()]
    assert len(received) == 2  # delivered to both workers, trained by one
