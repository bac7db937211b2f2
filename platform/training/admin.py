from django.contrib import admin

from training.models import ModelVersion, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Approval happens only through audits.services.review_model, never here."""

    list_display = ["id", "organisation", "problem", "status", "created_at", "decided_at"]
    list_filter = ["status", "vertical", "problem", "organisation"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
