"""Task results in the database, stored through a database outage instead of stopping the
worker.

django-celery-results retries only ``InterfaceError``; a server that went away raises
``OperationalError``, which Celery's trace cannot store as the task's failure either, and
the worker stops ("Unrecoverable error"). With ``result_backend_always_retry`` Celery
retries, with backoff, what :meth:`exception_safe_to_retry` accepts: here both. Storing a
result is idempotent (an upsert by task id), so a retry is safe.
"""

from __future__ import annotations

from django.db import connection
from django_celery_results.backends.database import DatabaseBackend

from observability.outage import OUTAGE_ERRORS


class OutageTolerantDatabaseBackend(DatabaseBackend):
    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, OUTAGE_ERRORS):
            connection.close()  # the next try opens a new connection
            return True
        return False
