from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import Organisation
from ingestion.models import DatasetVersion


class TrainingRun(models.Model):
    """One training job. Its status is a state machine the task moves with compare-and-set
    updates, so a second delivery of the same message finds the run no longer queued and
    does nothing."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="runs")
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="runs"
    )
    vertical = models.CharField(max_length=64)
    problem = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    config = models.JSONField(default=dict)  # train config overrides, seed
    privacy_requested = models.JSONField(default=dict)  # enabled, target_epsilon, delta
    cancel_requested = models.BooleanField(default=False)
    # progress, written by the worker while it trains
    stage = models.CharField(max_length=32, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    total_epochs = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    val_metric = models.FloatField(null=True, blank=True)
    epsilon_spent = models.FloatField(null=True, blank=True)
    history = models.JSONField(default=list)
    # results
    metrics = models.JSONField(default=dict)
    privacy = models.JSONField(default=dict)
    fairness = models.JSONField(default=dict)
    result = models.JSONField(default=dict)  # the rest of ml_core's result: baseline, split, twin
    device = models.CharField(max_length=32, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    # Crash safety (training.services): the attempt that holds the run renews its lease
    # while it trains; a lease left to expire means that attempt died, and a new delivery
    # takes the run over and resumes it from its checkpoint. dispatched_at: when a
    # message for the run was last sent to the broker (the recovery re-sends lost ones).
    attempt = models.PositiveSmallIntegerField(default=0)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.problem}, {self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def progress_percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.total_epochs:
            return 0
        return min(99, int(100 * self.epoch / self.total_epochs))


class ModelVersion(models.Model):
    """A trained model awaiting, or having passed, human review."""

    class Status(models.TextChoices):
        PENDING_REVIEW = "pending_review", "Awaiting review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        # Model governance (governance.registry): one champion per problem and organisation;
        # a scheduled retrain enters as a challenger; a replaced champion is retired.
        CHAMPION = "champion", "Champion"
        CHALLENGER = "challenger", "Challenger (awaiting review)"
        RETIRED = "retired", "Retired"

    # Statuses a reviewer can still decide on, and those that may serve predictions.
    UNDECIDED = (Status.PENDING_REVIEW, Status.CHALLENGER)
    SERVING = (Status.APPROVED, Status.CHAMPION)

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="model_versions"
    )
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="model_version")
    vertical = models.CharField(max_length=64)
    problem = models.CharField(max_length=64)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING_REVIEW, db_index=True
    )
    artifact_sha256 = models.CharField(max_length=64)
    # Registry record (the rest, metrics, privacy and fairness, is the run's).
    code_version = models.CharField(max_length=64, blank=True)  # git commit, when known
    dataset_sha256 = models.CharField(max_length=64, blank=True)
    seed = models.IntegerField(null=True, blank=True)
    config = models.JSONField(default=dict)  # the run's training configuration
    # Why a model is held back in the review queue (e.g. a retrain whose fairness regressed).
    held_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "vertical", "problem"],
                condition=models.Q(status="champion"),
                name="one_champion_per_problem",
            )
        ]

    def __str__(self) -> str:
        return f"model {self.pk} ({self.problem}, {self.status})"
