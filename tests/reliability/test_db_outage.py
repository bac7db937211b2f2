"""A database outage: the web answers 503 with Retry-After (a plain page for people, JSON
for the API), /healthz reports the database down, and every page answers again by itself
once the database is back. Against a live server (real HTTP, its own threads and
connections) and a real outage:

* PostgreSQL: the test database refuses new connections (``ALLOW_CONNECTIONS false``) and
  every open one is terminated (``pg_terminate_backend``), as when the server goes down;
* SQLite: the database file is moved away and a folder put in its place, so opening it
  fails (permissions would not do: the tests may run as root).
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

from observability.outage import RETRY_AFTER_S

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT_S = 60


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
