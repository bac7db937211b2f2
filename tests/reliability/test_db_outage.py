"""A database outage: the web answers 503 with Retry-After (a plain page for people, JSON
for the API), /healthz reports the database down, and every page answers again by itself
once the database is back. Against a live server (real HTTP, its own threads and
connections) and a real outage:

* PostgreSQL: the test database refuses new connections (``ALLOW_CONNECTIONS false``) and
  every open one is terminated (``pg_terminate_backend``), as when the server goes down;
* SQLite: the database file is moved away and a folder put in its place, so opening it
  fails (permissions would not do: the tests may run as root).

A worker that loses the database in the middle of a run leaves it running; the run is
resumed from its checkpoint when the database is back (PostgreSQL only).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.db import connection, connections
from django.test import Client

from audits.models import AuditLogEntry
from governance.models import LedgerEntry
from observability.outage import RETRY_AFTER_S
from tests.support.worker import FAST_RECOVERY, celery_worker, wait_for, wait_for_run
from training.models import TrainingRun
from training.services import start_run

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT_S = 60
WAIT_S = 300


@contextmanager
def postgres_outage() -> Iterator[None]:
    import psycopg

    name = connection.settings_dict["NAME"]
    params = {key: value for key, value in {
        "host": connection.settings_dict.get("HOST") or None,
        "port": connection.settings_dict.get("PORT") or None,
        "user": connection.settings_dict.get("USER") or None,
        "password": connection.settings_dict.get("PASSWORD") or None,
    }.items() if value}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        quoted = psycopg.sql.Identifier(name)
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(quoted))
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", [name])
            yield
        finally:
            admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true")
                          .format(quoted))
    connections.close_all()  # this process's own connection was terminated too


@contextmanager
def sqlite_outage() -> Iterator[None]:
    path = Path(connection.settings_dict["NAME"])
    moved = path.with_name(path.name + ".away")
    connections.close_all()
    os.replace(path, moved)
    path.mkdir()
    try:
        yield
    finally:
        path.rmdir()
        os.replace(moved, path)
        connections.close_all()


def outage():
    if connection.vendor == "postgresql":
        return postgres_outage()
    if connection.vendor == "sqlite":
        return sqlite_outage()
    pytest.skip(f"no outage simulation for {connection.vendor}")


def test_a_database_outage_answers_503_and_recovers_by_itself(live_server, analyst,
                                                              api_client):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=analyst).key
    browser = Client()
    browser.force_login(analyst)
    person = requests.Session()
    person.cookies.set("sessionid", browser.cookies["sessionid"].value)
    program = requests.Session()
    program.headers["Authorization"] = f"Token {token}"
    page, api, health = (f"{live_server.url}/", f"{live_server.url}/api/v1/runs/",
                         f"{live_server.url}/healthz")

    def answers() -> dict[str, requests.Response]:
        return {"page": person.get(page, timeout=TIMEOUT_S),
                "api": program.get(api, timeout=TIMEOUT_S),
                "health": requests.get(health, timeout=TIMEOUT_S)}

    before = answers()
    assert {name: r.status_code for name, r in before.items()} == {
        "page": 200, "api": 200, "health": 200}

    with outage():
        during = answers()
    assert {name: r.status_code for name, r in during.items()} == {
        "page": 503, "api": 503, "health": 503}
    assert during["page"].headers["Retry-After"] == str(RETRY_AFTER_S)
    assert during["page"].headers["Content-Type"].startswith("text/html")
    assert "temporarily unavailable" in during["page"].text
    assert "Traceback" not in during["page"].text
    assert during["api"].headers["Retry-After"] == str(RETRY_AFTER_S)
    assert during["api"].json()["code"] == "database_unavailable"
    assert during["health"].json()["database"] == "error"
    assert during["health"].json()["status"] == "error"

    after = answers()  # nothing restarted: the next requests simply work again
    assert {name: r.status_code for name, r in after.items()} == {
        "page": 200, "api": 200, "health": 200}
    assert after["health"].json()["database"] == "ok"
    assert after["api"].json()["count"] == 0


@pytest.mark.slow
@pytest.mark.worker
def test_a_database_outage_during_training_pauses_the_run_and_it_resumes(
    finance_version, analyst, tmp_path
):
    """The worker loses the database in the middle of a run: the run is not failed (the
    data is not at fault); once the database is back and the run's lease has expired, the
    worker's recovery sends it again and it resumes from its checkpoint."""
    if connection.vendor != "postgresql":
        pytest.skip("an open SQLite connection keeps its file: only the web sees the outage")
    version = finance_version(analyst, n_rows=1500)
    log = tmp_path / "worker.log"
    config = {"epochs": 16, "batch_size": 32, "patience": 16, "seed": 3}
    with celery_worker(log=log, env=FAST_RECOVERY):
        run = start_run(version=version, user=analyst, target_epsilon=2.0, config=config)
        wait_for_run(run, timeout=WAIT_S, log=log, interval=0.05,
                     until=lambda r: r.stage == "training" and r.epoch >= 2)
        with outage():
            wait_for(lambda: "the database became unreachable" in log.read_text(),
                     timeout=WAIT_S, log=log, what="the worker to notice the outage")
        wait_for_run(run, timeout=WAIT_S, log=log)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.attempt == 2
    resumed = AuditLogEntry.objects.get(action="run.resumed", object_id=str(run.pk))
    assert resumed.detail["checkpoint_epochs"]["training"] >= 1
    assert run.privacy["steps"] == run.privacy["planned_steps"]
    assert LedgerEntry.objects.get(run=run).steps == run.privacy["steps"]
