"""Celery hooks: structured worker logs with task and run context, the request id carried
from the web request into the task it enqueued, and the worker heartbeat thread."""

from __future__ import annotations

import logging

from celery import signals
from django.conf import settings

from observability import context
from observability.logs import ContextFilter, formatter_for

logger = logging.getLogger(__name__)

# The message header that carries the request id from the web process to the worker.
REQUEST_ID_HEADER = "tessera_request_id"

_heartbeats: dict[str, object] = {}
_task_tokens: dict[str, dict] = {}


def _use_structured_format(logger: logging.Logger | None = None, **_) -> None:
    """After Celery configured the worker's loggers: same format and fields as the web."""
    log_format = getattr(settings, "LOG_FORMAT", "logfmt")
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(formatter_for(log_format))
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())


def _add_request_id(headers=None, **_) -> None:
    request_id = context.get("request_id")
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def _enter_task(task_id=None, task=None, **_) -> None:
    request_id = getattr(getattr(task, "request", None), REQUEST_ID_HEADER, None)
    values = {"task_id": task_id, "task_name": getattr(task, "name", None)}
    if request_id:
        values["request_id"] = request_id
    _task_tokens[task_id] = context.bind(**values)


def _leave_task(task_id=None, **_) -> None:
    tokens = _task_tokens.pop(task_id, None)
    if tokens:
        try:
            context.unbind(tokens)
        except ValueError:  # set in another context (another thread): clear instead
            context.bind(task_id=None, task_name=None, request_id=None)


def _start_heartbeat(sender=None, **_) -> None:
    from observability.heartbeat import HeartbeatThread

    hostname = getattr(sender, "hostname", None) or "unknown"
    try:
        queues = sorted(q.name for q in sender.task_consumer.queues)
    except AttributeError:
        queues = []
    thread = HeartbeatThread(hostname=hostname, queues=queues)
    _heartbeats[hostname] = thread
    thread.start()
    logger.info("heartbeat started for %s every %.0f s", hostname, thread.interval_s)


def _stop_heartbeat(sender=None, **_) -> None:
    from observability.heartbeat import forget

    for hostname, thread in list(_heartbeats.items()):
        thread.stop()
        try:
            forget(hostname)
        except Exception:  # noqa: BLE001 - shutting down: the row then just goes stale
            logger.warning("could not remove the heartbeat of %s", hostname, exc_info=True)
        _heartbeats.pop(hostname, None)


def connect() -> None:
    """Connect the hooks (weakly-held receivers would vanish: keep strong references)."""
    signals.after_setup_logger.connect(_use_structured_format, weak=False)
    signals.after_setup_task_logger.connect(_use_structured_format, weak=False)
    signals.before_task_publish.connect(_add_request_id, weak=False)
    signals.task_prerun.connect(_enter_task, weak=False)
    signals.task_postrun.connect(_leave_task, weak=False)
    signals.worker_ready.connect(_start_heartbeat, weak=False)
    signals.worker_shutdown.connect(_stop_heartbeat, weak=False)
