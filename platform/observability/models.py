from django.db import models


class WorkerHeartbeat(models.Model):
    """The last sign of life of one Celery worker, written by the worker itself.

    The health endpoint reads it: a recent row means a worker is up; only old rows mean
    the workers stopped answering (crashed, or the machine is gone); no row means none
    ever started (or all shut down cleanly, which deletes their rows).
    """

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"{self.hostname} (last seen {self.last_seen:%Y-%m-%d %H:%M:%S})"
