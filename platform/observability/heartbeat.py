"""Worker heartbeats: a thread in each Celery worker writes a timestamp to the database.

A thread, not Celery's event loop, because a solo-pool GPU worker runs its task in the
main thread: during an hour of training its event loop (and so ``celery inspect ping``)
is silent, while this thread keeps reporting. The database, not a local file, because
workers run on other machines than the web server.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from observability.models import WorkerHeartbeat
from observability.repeating import RepeatingThread

logger = logging.getLogger(__name__)

# Rows of workers gone this long are deleted, so crashed test or scaled-down workers do
# not keep the status "stale" for ever.
FORGET_AFTER = timedelta(days=1)


def heartbeat_interval_s() -> float:
    return float(getattr(settings, "TESSERA_WORKER_HEARTBEAT_S", 15.0))


def stale_after_s() -> float:
    return float(getattr(settings, "TESSERA_WORKER_STALE_AFTER_S", 4 * heartbeat_interval_s()))


def beat_once(*, hostname: str, queues: list[str], started_at=None) -> None:
    """Record that ``hostname`` is alive now."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={"queues": list(queues), "pid": os.getpid(), "last_seen": now},
        create_defaults={"queues": list(queues), "pid": os.getpid(), "last_seen": now,
                         "started_at": started_at or now},
    )
    WorkerHeartbeat.objects.filter(last_seen__lt=now - FORGET_AFTER).delete()


def forget(hostname: str) -> None:
    """A worker that shuts down cleanly removes its row: it is gone, not stale."""
    WorkerHeartbeat.objects.filter(hostname=hostname).delete()


class HeartbeatThread(RepeatingThread):
    """Calls :func:`beat_once` now and every ``interval_s`` seconds until ``stop()``."""

    def __init__(self, *, hostname: str, queues: list[str], interval_s: float | None = None):
        super().__init__(name=f"tessera-heartbeat-{hostname}",
                         interval_s=interval_s or heartbeat_interval_s(), action=self.beat)
        self.hostname = hostname
        self.queues = queues
        self.started_at = timezone.now()

    def beat(self) -> None:
        beat_once(hostname=self.hostname, queues=self.queues, started_at=self.started_at)


@dataclass(frozen=True)
class WorkerStatus:
    status: str  # "ok" | "stale" | "none"
    workers: tuple[dict, ...]

    def to_dict(self) -> dict:
        return {"status": self.status, "workers": list(self.workers)}


def worker_status() -> WorkerStatus:
    """ok: some worker reported within the stale limit; stale: only older reports; none."""
    now = timezone.now()
    limit = stale_after_s()
    workers = []
    for beat in WorkerHeartbeat.objects.all()[:50]:
        age = (now - beat.last_seen).total_seconds()
        workers.append({"hostname": beat.hostname, "queues": beat.queues,
                        "seconds_since_heartbeat": round(age, 1), "fresh": age <= limit})
    if not workers:
        return WorkerStatus("none", ())
    status = "ok" if any(w["fresh"] for w in workers) else "stale"
    return WorkerStatus(status, tuple(workers))
