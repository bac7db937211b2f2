from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import Organisation
from training.models import ModelVersion, TrainingRun


class FairnessReport(models.Model):
    """The bias report of one run: per sensitive attribute, groups, disparities, verdict."""

    run = models.OneToOneField(
        TrainingRun, on_delete=models.CASCADE, related_name="fairness_report"
    )
    passed = models.BooleanField()
    report = models.JSONField(default=dict)  # attribute -> {by_group, disparities, checks, passed}
    nonprivate_report = models.JSONField(default=dict)  # the same for the non-private twin
    policy = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)


class Review(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="reviews"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class AppendOnlyError(RuntimeError):
    pass


class AuditLogQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ARG002
        raise AppendOnlyError("the audit log is append-only")

    def delete(self):
        raise AppendOnlyError("the audit log is append-only")


class AuditLogEntry(models.Model):
    """Who did what to which object, when. Rows are only ever inserted."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="audit_log"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("the audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("the audit log is append-only")
