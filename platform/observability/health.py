"""``GET /healthz``: is this deployment able to work? No login; no secrets in the answer.

200 when the database and the broker answer (the web can take uploads and queue runs),
503 otherwise. The worker field says whether a Celery worker reported recently
(``ok``), only long ago (``stale``) or never (``none``); a missing worker makes the status
``degraded``, not an error, because the web itself still works.
"""

from __future__ import annotations

import logging
import os

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0


def check_database() -> tuple[str, str | None]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        logger.warning("health: database check failed", exc_info=True)
        return "error", type(exc).__name__
    return "ok", None


def check_broker(app=None) -> tuple[str, str | None]:
    """Connect to the broker (Redis answers a PING when the channel opens); for kombu's
    filesystem transport, check that its folders exist and are writable."""
    from celery import current_app

    app = app or current_app
    # The URL comes from the connection, not app.conf: Celery lets the environment's
    # CELERY_BROKER_URL win over the configuration, and so does every worker.
    options = {**(app.conf.broker_transport_options or {}),
               "socket_connect_timeout": BROKER_TIMEOUT_S, "socket_timeout": BROKER_TIMEOUT_S}
    try:
        with app.connection_for_write(transport_options=options,
                                      connect_timeout=BROKER_TIMEOUT_S) as conn:
            if conn.transport_cls == "filesystem":
                folders = {conn.transport_options.get("data_folder_in"),
                           conn.transport_options.get("data_folder_out")} - {None}
                for folder in folders:
                    if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
                        raise OSError(f"broker folder {folder} is missing or read-only")
                return "ok", None
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2,
                                   interval_max=0.2, timeout=BROKER_TIMEOUT_S)
            conn.default_channel  # noqa: B018 - opening a Redis channel sends a PING
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        logger.warning("health: broker check failed: %s", type(exc).__name__)
        return "error", type(exc).__name__
    return "ok", None


def health_report() -> tuple[dict, int]:
    """The JSON body and HTTP status of ``/healthz``."""
    from observability.heartbeat import worker_status

    database, database_error = check_database()
    broker, broker_error = check_broker()
    workers = {"fresh": 0, "known": 0}
    if database == "ok":
        try:
            status = worker_status()
            # Counts only: host names are nobody's business on an endpoint without login.
            worker = status.status
            workers = {"fresh": sum(w["fresh"] for w in status.workers),
                       "known": len(status.workers)}
        except Exception:  # noqa: BLE001 - e.g. migrations not applied yet
            logger.warning("health: worker heartbeat check failed", exc_info=True)
            worker = "unknown"
    else:
        worker = "unknown"
    serving = database == "ok" and broker == "ok"
    body = {
        "status": ("ok" if worker == "ok" else "degraded") if serving else "error",
        "database": database,
        "broker": broker,
        "worker": worker,
        "workers": workers,
    }
    errors = {name: error for name, error in (("database", database_error),
                                              ("broker", broker_error)) if error}
    if errors:
        body["errors"] = errors
    return body, 200 if serving else 503


@login_not_required
@never_cache
@require_GET
def healthz(request):
    body, status = health_report()
    return JsonResponse(body, status=status)
