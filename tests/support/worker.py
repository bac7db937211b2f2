"""A real Celery worker for tests, as a subprocess.

It runs with the test settings, pointed at the test database (a file for SQLite,
``test_<name>`` on PostgreSQL) and at the broker CELERY_BROKER_URL names (the test
broker folder for ``filesystem://``, or Redis). Call these inside a test: the upload and
artifact folders are per test (tests/conftest.py) and the worker must use the same.
"""

from __future__ import annotations

import os
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


@contextmanager
def celery_worker(*, log: Path, queues: str = "training,default",
                  env: dict | None = None) -> Iterator[subprocess.Popen]:
    """A solo-pool worker on ``queues`` for the block's duration; its output goes to
    ``log``, whose tail is printed afterwards (pytest shows it when the test fails)."""
    from config.celery_app import app

    purge_training_queues(app)
    with log.open("wb") as out:
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
