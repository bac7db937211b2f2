"""A request id for every request: taken from ``X-Request-ID`` when a proxy sent a sane
one, made up otherwise; put on the log context, the response and outgoing Celery tasks."""

from __future__ import annotations

import logging
import re
import time
import uuid

from observability import context

logger = logging.getLogger("tessera.request")

HEADER = "X-Request-ID"
# Ids from outside end up in log lines: letters, digits and a few separators only.
_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Probes ask every few seconds; their lines would drown the rest at INFO.
QUIET_PATHS = ("/healthz",)


def request_id_from(value: str | None) -> str:
    """The incoming id when it is safe to log, a new random one otherwise."""
    if value and _VALID.match(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get(HEADER))
        request.request_id = request_id
        started = time.monotonic()
        with context.log_context(request_id=request_id):
            response = self.get_response(request)
            level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
            logger.log(level, "%s %s %s", request.method, request.path, response.status_code,
                       extra={"method": request.method, "path": request.path,
                              "status": response.status_code,
                              "duration_ms": round((time.monotonic() - started) * 1000, 1)})
        response[HEADER] = request_id
        return response
