"""Governance records. Ledger entries and promotion events are only ever inserted."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import Organisation
from ingestion.models import Dataset, DatasetVersion
from training.models import ModelVersion, TrainingRun


class AppendOnlyRecordError(RuntimeError):
    pass


class _AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ARG002
        raise AppendOnlyRecordError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise AppendOnlyRecordError(f"{self.model.__name__} rows are append-only")


class _AppendOnly(models.Model):
    objects = _AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyRecordError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyRecordError(f"{type(self).__name__} rows are append-only")


class DatasetPolicy(models.Model):
    """What admins decided for one dataset: its privacy budget and whether it is personal.

    Created on first use with the problem's defaults (``ProblemSpec.dataset_budget_epsilon``;
    personal unless the problem's data is operational or trains without privacy by default).
    """

    dataset = models.OneToOneField(
        Dataset, on_delete=models.CASCADE, related_name="governance_policy"
    )
    budget_epsilon = models.FloatField()
    personal_data = models.BooleanField(default=True)
    # An admin's standing permission for analysts to train without privacy on this data.
    nonprivate_allowed = models.BooleanField(default=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"policy of {self.dataset}"


class LedgerEntry(_AppendOnly):
    """The privacy one training spent on a dataset: its accountant's numbers, or an upper
    bound (a failed training is charged its whole target, since its exact step count is
    lost). A training is a run, or the retraining an empirical privacy audit does."""

    class Basis(models.TextChoices):
        ACCOUNTED = "accounted", "Accounted (the run's accountant)"
        UPPER_BOUND = "upper_bound", "Upper bound (the run's target)"

    class Purpose(models.TextChoices):
        TRAINING = "training", "Training run"
        PRIVACY_AUDIT = "privacy_audit", "Empirical privacy audit"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="ledger")
    purpose = models.CharField(max_length=16, choices=Purpose.choices,
                               default=Purpose.TRAINING)
    # The training run charged (purpose "training"); empty for an audit's retraining.
    run = models.OneToOneField(
        TrainingRun, on_delete=models.PROTECT, related_name="ledger_entry", null=True,
        blank=True,
    )
    # The model whose configuration an audit retrained (purpose "privacy_audit").
    audited_model = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="privacy_audit_charges",
        null=True, blank=True,
    )
    run_status = models.CharField(max_length=16)
    basis = models.CharField(max_length=16, choices=Basis.choices)
    epsilon = models.FloatField()
    delta = models.FloatField()
    noise_multiplier = models.FloatField(null=True, blank=True)
    sample_rate = models.FloatField(null=True, blank=True)
    steps = models.PositiveIntegerField(default=0)
    # The dataset's composed total with this charge, and how it was composed (basic, prv);
    # computed once here, under a lock, so pages and start_run only read it.
    total_epsilon_after = models.FloatField()
    composition = models.CharField(max_length=8, default="basic")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(
                name="ledger_entry_names_what_it_charges",
                condition=(models.Q(purpose="training", run__isnull=False,
                                    audited_model__isnull=True)
                           | models.Q(purpose="privacy_audit", run__isnull=True,
                                      audited_model__isnull=False)),
            ),
        ]


class GatePolicy(models.Model):
    """Promotion gates for one problem in one organisation (defaults from the vertical)."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="gate_policies"
    )
    vertical = models.CharField(max_length=64)
    problem = models.CharField(max_length=64)
    require_fairness = models.BooleanField(default=True)
    require_privacy = models.BooleanField(default=True)
    max_epsilon = models.FloatField()
    require_baseline = models.BooleanField(default=True)
    # How much worse than the champion (on the primary metric) a challenger may be.
    champion_tolerance = models.FloatField(default=0.02)
    require_signoff = models.BooleanField(default=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "vertical", "problem"], name="one_gate_policy_per_problem"
            )
        ]

    def __str__(self) -> str:
        return f"gates for {self.vertical}/{self.problem} ({self.organisation})"


class PromotionEvent(_AppendOnly):
    """One change of a model's standing: who, when, why, and what the gates said."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="promotion_events"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="promotion_events"
    )
    vertical = models.CharField(max_length=64)
    problem = models.CharField(max_length=64)
    action = models.CharField(max_length=32)  # promoted, retired, replaced, held
    from_status = models.CharField(max_length=20)
    to_status = models.CharField(max_length=20)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )
    reason = models.TextField()
    override = models.BooleanField(default=False)
    gates = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class RetrainSchedule(models.Model):
    """A django-celery-beat schedule retraining one problem of one organisation."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="retrain_schedules"
    )
    vertical = models.CharField(max_length=64)
    problem = models.CharField(max_length=64)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.PROTECT, related_name="+"
    )
    # Whose permissions the retrain runs under (an admin or reviewer who set it up).
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    privacy_enabled = models.BooleanField(default=True)
    config = models.JSONField(default=dict)
    retrain_on_drift = models.BooleanField(default=False)
    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "vertical", "problem"], name="one_schedule_per_problem"
            )
        ]

    def __str__(self) -> str:
        return f"retrain {self.vertical}/{self.problem} ({self.organisation})"


class ScheduledRetrain(models.Model):
    """A run a schedule started (so its model enters as a challenger)."""

    schedule = models.ForeignKey(RetrainSchedule, on_delete=models.CASCADE, related_name="runs")
    run = models.OneToOneField(TrainingRun, on_delete=models.CASCADE, related_name="retrain")
    tick_key = models.CharField(max_length=64)  # the beat tick that started it
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["schedule", "tick_key"], name="one_run_per_tick")
        ]


class CancellableJob(models.Model):
    """A job a worker runs off the default queue and a user may cancel, as a run: the
    status machine the worker moves with compare-and-set updates (a second delivery finds
    it no longer queued and does nothing), and the flag that
    ``training.progress.request_cancel`` sets and ``CancelCheck`` reads between chunks."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    IN_FLIGHT = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_terminal(self) -> bool:
        return self.status not in self.IN_FLIGHT


class ScoringJob(CancellableJob):
    """A batch of rows scored by one model (a Celery job on the default queue)."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="scoring_jobs"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="scoring_jobs"
    )
    original_filename = models.CharField(max_length=255)
    input_path = models.CharField(max_length=500)  # relative to TESSERA_UPLOAD_DIR
    output_path = models.CharField(max_length=500, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list)
    drift = models.JSONField(default=dict)

    @property
    def progress_percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        if not self.rows_total:
            return 0
        return min(99, int(100 * self.rows_done / self.rows_total))


class PrivacyAudit(CancellableJob):
    """One empirical privacy audit of a model (governance.privacy_audit), queued by a reviewer
    and run by a worker. While queued or running it reserves its configuration's target
    epsilon on the dataset's ledger (governance.ledger); when it ends it is charged what its
    retraining spent (its accountant's numbers, also for a cancel mid-way), once."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="privacy_audits"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="privacy_audits"
    )
    target_epsilon = models.FloatField()  # reserved while in flight
    ledger_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, related_name="privacy_audit", null=True,
        blank=True,
    )
    message = models.TextField(blank=True)  # why it failed (or was refused: the budget)


class DriftReport(models.Model):
    """Data drift of a dataset version or a scoring batch against a model's training data."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="drift_reports"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="drift_reports"
    )
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    scoring_job = models.ForeignKey(
        ScoringJob, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    drifted = models.BooleanField()
    threshold = models.FloatField()
    report = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class Mitigation(models.Model):
    """A bias mitigation of one model's decisions, beside the original report."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="mitigations"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="mitigations"
    )
    method = models.CharField(max_length=32)  # threshold_optimizer
    constraint = models.CharField(max_length=32)
    attribute = models.CharField(max_length=200)
    result = models.JSONField(default=dict)  # ml_core.mitigation.MitigationResult.to_dict()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
