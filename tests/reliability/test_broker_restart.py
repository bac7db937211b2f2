"""The database, not the broker, says what still has to run: runs whose message the broker
lost are sent again by the recovery every worker runs (training.recovery.RunRecovery).

Brokers lose messages in two ways here: kombu's filesystem transport deletes a message
when a consumer takes it (a worker killed with it has taken it for good), and a Redis
without persistence (``--save "" --appendonly no``, as in CI) loses everything queued when
it restarts. The restart test runs its own Redis server on a free port, so the shared one
is never disturbed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from config.celery_app import app as celery_app
from governance.models import LedgerEntry
from observability.models import WorkerHeartbeat
from tests.conftest import FAST_TRAINING, ROOT
from tests.support.worker import (
    FAST_RECOVERY,
    celery_worker,
    purge_training_queues,
    use_broker,
    wait_for,
    wait_for_run,
    worker_env,
)
from training.models import TrainingRun
from training.recovery import RunRecovery, training_queue_size
from training.services import start_run

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_S = 300
LONG_AGO = timedelta(hours=1)


@pytest.fixture
def empty_queues():
    purge_training_queues(celery_app)
    yield
    purge_training_queues(celery_app)


def queued_runs(version, user, n: int) -> list[TrainingRun]:
    """``n`` runs whose message was sent an hour ago (as far as the database knows)."""
    runs = [start_run(version=version, user=user, target_epsilon=1.0,
                      config=dict(FAST_TRAINING), enqueue=False) for _ in range(n)]
    for run in runs:
        TrainingRun.objects.filter(pk=run.pk).update(
            dispatched_at=timezone.now() - LONG_AGO, task_id=f"lost-{run.pk}")
    return runs


def test_recovery_resends_a_run_whose_attempt_died(validated_version, analyst, empty_queues):
    alive, dead = queued_runs(validated_version, analyst, 2)
    for run, lease_left in ((alive, timedelta(minutes=1)), (dead, -timedelta(seconds=1))):
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.RUNNING, attempt=1, lease_token=f"token-{run.pk}",
            lease_expires_at=timezone.now() + lease_left, stage="training")
    recovery = RunRecovery()
    assert recovery() == [dead.pk]
    assert training_queue_size() == 1
    assert recovery() == []  # just sent: left alone for TESSERA_REQUEUE_AFTER_S


def test_recovery_resends_queued_runs_the_broker_lost(validated_version, analyst,
                                                      empty_queues):
    runs = queued_runs(validated_version, analyst, 2)
    recovery = RunRecovery()
    # The queue holds no message for two queued runs. Once could be a worker that has just
    # taken a message and not yet claimed its run; twice in a row, they are lost.
    assert recovery() == []
    assert sorted(recovery()) == [run.pk for run in runs]
    assert training_queue_size() == 2

    # Their messages wait in the queue now: nothing more is sent, however old they are.
    TrainingRun.objects.filter(pk__in=[r.pk for r in runs]).update(
        dispatched_at=timezone.now() - LONG_AGO)
    assert recovery() == [] and recovery() == []
    # Runs started in-process (``manage.py pipeline --inline``) were never sent: not ours.
    TrainingRun.objects.filter(pk__in=[r.pk for r in runs]).update(dispatched_at=None)
    purge_training_queues(celery_app)
    assert recovery() == [] and recovery() == []


def test_the_filesystem_transport_loses_a_message_whose_consumer_died(empty_queues):
    """Why the recovery is needed on the embedded broker: acks_late cannot help."""
    if not settings.CELERY_BROKER_URL.startswith("filesystem"):
        pytest.skip("kombu's filesystem transport only")
    from training.tasks import train_run

    train_run.apply_async(args=[0], queue="training")
    assert training_queue_size() == 1
    take_and_die = (
        "import os, signal, django; django.setup()\n"
        "from config.celery_app import app\n"
        "with app.connection_for_read() as conn:\n"
        "    message = conn.default_channel.basic_get('training', no_ack=False)\n"
        "    assert message is not None\n"
        "    os.kill(os.getpid(), signal.SIGKILL)  # before any acknowledgement\n"
    )
    done = subprocess.run([sys.executable, "-c", take_and_die], env=worker_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    assert training_queue_size() == 0  # gone for good, unacknowledged as it was


class PrivateRedis:
    """A Redis server of this test's own, without persistence, on a free port."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port, socket_timeout=5)

    def answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.directory),
             "--logfile", str(self.directory / "redis.log"),
             "--pidfile", str(self.directory / "redis.pid")], check=True, timeout=30)
        self._until(self.answers, "start")

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"],
                       capture_output=True, timeout=30)
        self._until(lambda: not self.answers(), "stop")

    def _until(self, predicate, what: str) -> None:
        deadline = time.monotonic() + 30
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"the private Redis on port {self.port} did not {what}")
            time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.worker
def test_a_redis_restart_loses_no_queued_run(validated_version, analyst, tmp_path):
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("CELERY_BROKER_URL is not Redis")
    if not shutil.which("redis-server"):
        pytest.skip("no redis-server to start a private Redis")
    server = PrivateRedis(tmp_path)
    server.start()
    log = tmp_path / "worker.log"
    try:
        with celery_worker(log=log, env={**FAST_RECOVERY, "CELERY_BROKER_URL": server.url}), \
                use_broker(server.url):
            wait_for(lambda: WorkerHeartbeat.objects.exists(), timeout=WAIT_S, log=log,
                     what="the worker to start")
            # One long run keeps the (single) worker busy while the others wait in Redis.
            first = start_run(version=validated_version, user=analyst, target_epsilon=1.0,
                              config={**FAST_TRAINING, "epochs": 30, "batch_size": 16})
            wait_for_run(first, timeout=WAIT_S, log=log,
                         until=lambda run: run.status == TrainingRun.Status.RUNNING)
            waiting = [start_run(version=validated_version, user=analyst, target_epsilon=1.0,
                                 config=dict(FAST_TRAINING)) for _ in range(3)]
            assert server.client.llen("training") == 3  # queued in Redis, and only there
            first.refresh_from_db()
            assert first.status == TrainingRun.Status.RUNNING

            server.stop()
            server.start()
            assert server.client.llen("training") == 0  # the restart emptied Redis

            for run in (first, *waiting):
                wait_for_run(run, timeout=WAIT_S, log=log)
    finally:
        server.stop()
    for run in (first, *waiting):
        assert run.status == TrainingRun.Status.SUCCEEDED, run.error
        assert run.attempt == 1  # each trained once
        assert LedgerEntry.objects.get(run=run).steps == run.privacy["steps"]
    assert "sent runs" in log.read_text()  # the recovery, not luck, brought them back
