"""A database outage answers 503 with Retry-After: a plain page for people, JSON for the
API. Nothing here reads the database, and nothing is kept between requests: once the
database answers again, so does every page (Django opens a new connection per request).

Two entry points, because Django reports exceptions in two ways: the middleware's
``process_exception`` sees what a view raised (an API view included), and ``handler500``
(:func:`server_error`) sees what a middleware raised, e.g. the session lookup of a
signed-in user.
"""

from __future__ import annotations

import logging
import sys

from django.db.utils import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

logger = logging.getLogger(__name__)

# Django's wrappers of every driver's "cannot reach / lost the connection" errors.
OUTAGE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_S = 30
API_PREFIX = "/api/"


def is_database_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) says the database is unreachable."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OUTAGE_ERRORS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """The 503 answer: JSON under /api/, a page otherwise; both say when to retry."""
    if request.path.startswith(API_PREFIX):
        response: HttpResponse = JsonResponse(
            {"detail": "The database is temporarily unavailable; retry in "
                       f"{RETRY_AFTER_S} seconds.", "code": "database_unavailable"},
            status=503)
    else:
        # Rendered without the request: context processors would query the database.
        response = HttpResponse(
            render_to_string("observability/503.html", {"retry_after": RETRY_AFTER_S}),
            status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _log(request: HttpRequest, exc: BaseException) -> None:
    logger.warning("database unavailable while serving %s %s: %s: %s", request.method,
                   request.path, type(exc).__name__, str(exc).strip()[:300])


class DatabaseOutageMiddleware:
    """Turns a view's database-outage exception into :func:`database_unavailable`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_database_outage(exception):
            return None
        _log(request, exception)
        return database_unavailable(request)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a database outage raised outside a view answers 503 too; anything
    else is Django's own 500."""
    exc = sys.exc_info()[1]
    if is_database_outage(exc):
        _log(request, exc)
        return database_unavailable(request)
    return defaults.server_error(request)
