"""Gunicorn settings for the ``web`` role (``docker/entrypoint.sh``) and the API benchmark
(``bench/groups/api.py``), so both serve the app the same way. Every setting can be
overridden from the environment; ``--bind`` and other command-line options win over these.

The app is loaded once in the master (``preload_app``) and the URLconf imported there too,
which pulls in the views' heavy imports (torch, scikit-learn, Opacus: several seconds);
the workers are forked afterwards and answer their first request as fast as their last.
"""

from __future__ import annotations

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
# Sync workers. Side by side on a busy 2-core machine (bench/groups/api.py's load, 32
# clients, a connection per request), 3 gthread workers x 2 threads answered more requests
# per second (median 88 against 49) but with a longer tail (p95 median 940 ms against
# 796 ms): the entry is the p95. GUNICORN_WORKER_CLASS=gthread GUNICORN_THREADS=2 to try.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
backlog = int(os.environ.get("GUNICORN_BACKLOG", "2048"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
preload_app = True


def when_ready(server) -> None:
    """In the master, after the app is loaded and before any worker is forked: import every
    view module now, and leave no database connection open for the children to share."""
    from django.db import connections
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - importing the URLconf is the point
    connections.close_all()
