"""Admin: schedules and policies are editable; ledger and history are read-only records."""

from django.contrib import admin

from governance.models import (
    DatasetPolicy,
    DriftReport,
    GatePolicy,
    LedgerEntry,
    PromotionEvent,
    RetrainSchedule,
    ScoringJob,
)


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(_ReadOnly):
    list_display = ["id", "dataset", "run", "run_status", "basis", "epsilon",
                    "total_epsilon_after", "created_at"]
    list_filter = ["basis", "run_status"]


@admin.register(PromotionEvent)
class PromotionEventAdmin(_ReadOnly):
    list_display = ["id", "organisation", "problem", "model_version", "action", "actor",
                    "override", "created_at"]
    list_filter = ["action", "override", "organisation"]


@admin.register(DatasetPolicy)
class DatasetPolicyAdmin(admin.ModelAdmin):
    list_display = ["dataset", "budget_epsilon", "personal_data", "nonprivate_allowed",
                    "updated_by", "updated_at"]


@admin.register(GatePolicy)
class GatePolicyAdmin(admin.ModelAdmin):
    list_display = ["organisation", "vertical", "problem", "require_fairness", "max_epsilon",
                    "champion_tolerance", "require_signoff"]


@admin.register(RetrainSchedule)
class RetrainScheduleAdmin(admin.ModelAdmin):
    """The timing lives in the linked PeriodicTask (django-celery-beat's admin edits it)."""

    list_display = ["organisation", "vertical", "problem", "periodic_task", "owner",
                    "privacy_enabled", "last_tick_at", "last_outcome"]
    readonly_fields = ["last_tick_at", "last_outcome"]


@admin.register(ScoringJob)
class ScoringJobAdmin(_ReadOnly):
    list_display = ["id", "model_version", "status", "rows_done", "rows_total", "created_at"]


@admin.register(DriftReport)
class DriftReportAdmin(_ReadOnly):
    list_display = ["id", "model_version", "dataset_version", "scoring_job", "drifted",
                    "created_at"]
