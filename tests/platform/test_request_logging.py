"""Structured logs: every request gets an id (X-Request-ID), its log lines carry it, and a
training task's log lines carry the run id."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from observability import context
from observability.logs import ContextFilter, JsonFormatter, LogfmtFormatter
from observability.worker_signals import REQUEST_ID_HEADER, _add_request_id


@pytest.fixture
def capture_log():
    """capture_log(logger_name, formatter=None) -> a stream receiving that logger's lines,
    through the same filter and formatter (logfmt by default) as the settings use."""
    attached = []

    def attach(name: str, formatter: logging.Formatter | None = None) -> io.StringIO:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter or LogfmtFormatter())
        handler.addFilter(ContextFilter())
        logger = logging.getLogger(name)
        attached.append((logger, handler, logger.level))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        return stream

    yield attach
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


def lines_of(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


@pytest.fixture
def request_log(capture_log):
    stream = capture_log("tessera.request")
    return lambda: lines_of(stream)


@pytest.mark.django_db
def test_every_response_carries_a_new_request_id(client, request_log):
    first, second = client.get("/login/"), client.get("/login/")
    ids = first["X-Request-ID"], second["X-Request-ID"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]
    lines = request_log()
    assert len(lines) == 2
    assert f"request_id={ids[0]} " in lines[0]
    assert "method=GET path=/login/ status=200" in lines[0]
    assert re.search(r"duration_ms=\d+(\.\d+)? ", lines[0])


@pytest.mark.django_db
def test_a_proxy_request_id_is_kept_and_a_bad_one_replaced(client, request_log):
    kept = client.get("/login/", HTTP_X_REQUEST_ID="lb-7f3a.2024:01")
    assert kept["X-Request-ID"] == "lb-7f3a.2024:01"
    for bad in ("two words", "x" * 200, 'quote"d', "new\nline"):
        response = client.get("/login/", HTTP_X_REQUEST_ID=bad)
        assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"]), bad
    assert "request_id=lb-7f3a.2024:01 " in request_log()[0]


@pytest.mark.django_db
def test_redirects_for_anonymous_users_carry_the_id_too(client):
    response = client.get("/runs/")
    assert response.status_code == 302 and response["X-Request-ID"]


def test_log_context_fields_in_logfmt_and_json(capture_log):
    stream = capture_log("tests.observability.plain")
    logger = logging.getLogger("tests.observability.plain")
    with context.log_context(request_id="r-1", run_id=12):
        logger.info('said "hello" to %s', "run", extra={"epoch": 3})
    logger.info("outside")
    lines = lines_of(stream)
    assert re.fullmatch(
        r'ts=\S+Z level=INFO logger=tests\.observability\.plain request_id=r-1 run_id=12 '
        r'epoch=3 msg="said \\"hello\\" to run"', lines[0]), lines[0]
    assert "request_id" not in lines[1] and "run_id" not in lines[1]

    stream = capture_log("tests.observability.json", JsonFormatter())
    logger = logging.getLogger("tests.observability.json")
    with context.log_context(run_id=5):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    record = json.loads(lines_of(stream)[0])
    assert record["run_id"] == "5" and record["msg"] == "failed" and record["level"] == "ERROR"
    assert "ValueError: boom" in record["exc"]


def test_log_context_is_restored_after_the_block():
    with context.log_context(run_id=1):
        with context.log_context(run_id=2, task_id="t"):
            assert context.current() == {"run_id": "2", "task_id": "t"}
        assert context.current() == {"run_id": "1"}
    assert context.current() == {}
    with pytest.raises(ValueError):
        context.bind(user="x")


def test_the_request_id_travels_in_task_headers():
    headers: dict = {}
    _add_request_id(headers=headers)
    assert headers == {}
    with context.log_context(request_id="req-42"):
        _add_request_id(headers=headers)
    assert headers == {REQUEST_ID_HEADER: "req-42"}


@pytest.mark.django_db
def test_training_task_log_lines_carry_the_run_id(pending_model, capture_log):
    """The task runs for real (in-process); its run is already finished, so execute_run
    only logs that there is nothing to do: fast, and the same logging path."""
    from training.tasks import train_run

    stream = capture_log("training")
    run_id = pending_model.run_id
    train_run.apply(args=[run_id], task_id="task-abc").get()
    lines = lines_of(stream)
    assert len(lines) == 3, lines
    for line in lines:
        assert f"run_id={run_id} " in line
        assert "task_id=task-abc task_name=training.tasks.train_run" in line
    assert "nothing to do" in lines[1]
    assert context.current() == {}, "the task's context leaked out of it"
