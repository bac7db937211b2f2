"""GET /healthz: database, broker and worker heartbeat, without signing in."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from celery import Celery
from django.db import connection
from django.utils import timezone

from observability.health import check_broker
from observability.heartbeat import HeartbeatThread, beat_once, forget, worker_status
from observability.models import WorkerHeartbeat


def get_health(client):
    response = client.get("/healthz")
    return response, response.json()


@pytest.mark.django_db
def test_healthy_without_a_worker_is_degraded_but_serving(client):
    WorkerHeartbeat.objects.all().delete()
    response, body = get_health(client)
    assert response.status_code == 200
    assert body == {"status": "degraded", "database": "ok", "broker": "ok", "worker": "none",
                    "workers": {"fresh": 0, "known": 0}}
    assert "no-cache" in response["Cache-Control"]
    assert response["X-Request-ID"]


@pytest.mark.django_db
def test_a_fresh_heartbeat_makes_it_ok_and_an_old_one_stale(client, settings):
    settings.TESSERA_WORKER_STALE_AFTER_S = 60
    WorkerHeartbeat.objects.all().delete()
    beat_once(hostname="worker-gpu@a", queues=["training"])
    response, body = get_health(client)
    assert (response.status_code, body["status"], body["worker"]) == (200, "ok", "ok")
    assert body["workers"] == {"fresh": 1, "known": 1}

    WorkerHeartbeat.objects.update(last_seen=timezone.now() - timedelta(seconds=61))
    response, body = get_health(client)
    assert (response.status_code, body["status"], body["worker"]) == (200, "degraded", "stale")

    # One live worker is enough, whatever others crashed.
    beat_once(hostname="worker-cpu@b", queues=["default"])
    assert worker_status().status == "ok"
    forget("worker-cpu@b")
    forget("worker-gpu@a")
    assert worker_status().status == "none"


@pytest.mark.django_db
def test_heartbeats_of_workers_gone_for_a_day_are_forgotten():
    beat_once(hostname="crashed@old", queues=[])
    WorkerHeartbeat.objects.update(last_seen=timezone.now() - timedelta(days=2))
    beat_once(hostname="alive@new", queues=["default"])
    assert list(WorkerHeartbeat.objects.values_list("hostname", flat=True)) == ["alive@new"]


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_keeps_writing_until_stopped():
    thread = HeartbeatThread(hostname="thread@test", queues=["training"], interval_s=0.05)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        seen = set()
        while time.monotonic() < deadline and len(seen) < 3:
            beat = WorkerHeartbeat.objects.filter(hostname="thread@test").first()
            if beat:
                seen.add(beat.last_seen)
            time.sleep(0.05)
        assert len(seen) >= 3, "the thread did not keep beating"
    finally:
        thread.stop()
    assert not thread.is_alive()
    beat = WorkerHeartbeat.objects.get(hostname="thread@test")
    assert beat.queues == ["training"] and beat.started_at <= beat.last_seen


@pytest.mark.django_db
def test_an_unreachable_broker_answers_503(client, monkeypatch):
    from config.celery_app import app

    # Nothing listens on port 1: a real refused connection, not a stand-in. Celery takes
    # the environment's CELERY_BROKER_URL over its configuration: set both.
    dead = "redis://127.0.0.1:1/0"
    monkeypatch.setenv("CELERY_BROKER_URL", dead)
    monkeypatch.setitem(app.conf, "broker_url", dead)
    started = time.monotonic()
    response, body = get_health(client)
    assert response.status_code == 503
    assert (body["status"], body["database"], body["broker"]) == ("error", "ok", "error")
    assert body["errors"]["broker"]
    assert time.monotonic() - started < 10, "the broker check must give up quickly"


def test_the_filesystem_broker_needs_its_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    app = Celery("health-test", broker="filesystem://", set_as_current=False)
    folder = tmp_path / "broker" / "out"
    app.conf.broker_transport_options = {"data_folder_in": str(folder),
                                         "data_folder_out": str(folder)}
    assert check_broker(app)[0] == "error"
    folder.mkdir(parents=True)
    assert check_broker(app) == ("ok", None)


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_answers_503(client):
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-folder/tessera.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=1)
    try:
        response, body = get_health(client)
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert response.status_code == 503
    assert (body["status"], body["database"], body["worker"]) == ("error", "error", "unknown")
