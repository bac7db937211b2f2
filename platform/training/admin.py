from django.contrib import admin

from audits.readonly_admin import ReadOnlyAdmin
from training.models import ModelVersion, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    """Runs move through training.services; the admin only reads them."""

    list_display = [
        "id",
        "organisation",
        "problem",
        "status",
        "epoch",
        "epsilon_spent",
        "created_at",
    ]
    list_filter = ["status", "vertical", "problem", "organisation"]
    search_fields = ["id", "task_id"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    """Approval happens only through audits.services.review_model, never here."""

    list_display = ["id", "organisation", "problem", "status", "created_at", "decided_at"]
    list_filter = ["status", "vertical", "problem", "organisation"]
