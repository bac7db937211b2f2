"""A real Celery worker for tests, as a subprocess.

It runs with the test settings, pointed at the test database (a file for SQLite,
``test_<name>`` on PostgreSQL) and at the broker CELERY_BROKER_URL names (the test
broker folder for ``filesystem://``, or Redis). Call these inside a test: the upload and
artifact folders are per test (tests/conftest.py) and the worker must use the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import ROOT, database_url

# Crash-recovery timings for reliability tests: a dead attempt's lease expires after 3 s,
# workers look for lost runs every second, Redis hands back an unacknowledged message
# after 4 s and checks for such messages every second.
FAST_RECOVERY = {
    "TESSERA_RUN_LEASE_S": "3",
    "TESSERA_RECOVERY_INTERVAL_S": "1",
    "TESSERA_REQUEUE_AFTER_S": "2",
    "CELERY_VISIBILITY_TIMEOUT": "4",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
}


def worker_env(**extra: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "TESSERA_UPLOAD_DIR": str(settings.TESSERA_UPLOAD_DIR),
        "TESSERA_ARTIFACT_DIR": str(settings.TESSERA_ARTIFACT_DIR),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "platform")]),
        **extra,
    }


def purge_training_queues(app) -> None:
    """Drop messages an interrupted earlier test run may have left behind."""
    with app.connection_for_write() as conn:
        for queue in ("training", "default"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue never declared has nothing to purge
                pass


def wait_for(predicate, *, timeout: float, log: Path, what: str, interval: float = 0.5):
    """``predicate()``'s first truthy value; fails the test with the worker log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    pytest.fail(f"timed out waiting for {what}; worker log:\n{tail}")


def wait_for_run(run, *, timeout: float, log: Path, until=None, interval: float = 0.5):
    """Wait until ``until(run)`` (default: the run is terminal), refreshing it from the
    database; returns the run."""
    until = until or (lambda current: current.is_terminal)

    def reached():
        run.refresh_from_db()
        return until(run)

    wait_for(reached, timeout=timeout, log=log, what=f"run {run.pk} (status {run.status}, "
             f"stage {run.stage}, epoch {run.epoch})", interval=interval)
    return run


def kill(worker: subprocess.Popen) -> None:
    """SIGKILL: no warm shutdown, no acknowledgement, no cleanup, like an OOM kill."""
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)


@contextmanager
def celery_worker(*, log: Path, queues: str = "training,default", env: dict | None = None,
                  purge: bool = True) -> Iterator[subprocess.Popen]:
    """A solo-pool worker on ``queues`` for the block's duration; its output goes to
    ``log``, whose tail is printed afterwards (pytest shows it when the test fails).
    ``purge=False`` keeps what is queued (a worker replacing one that died)."""
    from config.celery_app import app

    if purge:
        purge_training_queues(app)
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker",
             "-Q", queues, "-P", "solo", "--concurrency", "1",
             "-n", f"test-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle",
             "--loglevel", "INFO"],
            env=worker_env(**(env or {})), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
        print("worker log (tail):\n" + log.read_text(errors="replace")[-6000:])


@contextmanager
def use_broker(url: str) -> Iterator[None]:
    """This process's Celery app (the web side of a test) publishes to and reads from
    ``url`` for the block, e.g. a private Redis the test restarts. (The read and write URLs,
    because the environment's CELERY_BROKER_URL wins over ``broker_url``.)"""
    from config.celery_app import app

    def forget_pools() -> None:
        # kombu keeps one pool per broker URL for the whole process: the app only drops its
        # references, so the usual broker's pool is there again afterwards, still open.
        app._pool = None
        app.amqp._producer_pool = None

    before = {key: app.conf.get(key) for key in ("broker_read_url", "broker_write_url")}
    forget_pools()
    app.conf.update(broker_read_url=url, broker_write_url=url)
    try:
        yield
    finally:
        if app._pool is not None:
            app._pool.force_close_all()  # the private broker's connections
        forget_pools()
        app.conf.update(**before)
