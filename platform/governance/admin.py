"""Admin: every governance record is read-only here (policies, schedules, the ledger and
history change in the app, through the services that audit them)."""

from django.contrib import admin

from audits.readonly_admin import ReadOnlyAdmin
from governance.models import (
    DatasetPolicy,
    DriftReport,
    GatePolicy,
    LedgerEntry,
    PromotionEvent,
    RetrainSchedule,
    ScoringJob,
)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "dataset", "run", "run_status", "basis", "epsilon",
                    "total_epsilon_after", "created_at"]
    list_filter = ["basis", "run_status"]


@admin.register(PromotionEvent)
class PromotionEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "organisation", "problem", "model_version", "action", "actor",
                    "override", "created_at"]
    list_filter = ["action", "override", "organisation"]


@admin.register(DatasetPolicy)
class DatasetPolicyAdmin(ReadOnlyAdmin):
    list_display = ["dataset", "budget_epsilon", "personal_data", "nonprivate_allowed",
                    "updated_by", "updated_at"]


@admin.register(GatePolicy)
class GatePolicyAdmin(ReadOnlyAdmin):
    list_display = ["organisation", "vertical", "problem", "require_fairness", "max_epsilon",
                    "champion_tolerance", "require_signoff"]


@admin.register(RetrainSchedule)
class RetrainScheduleAdmin(ReadOnlyAdmin):
    """The timing lives in the linked PeriodicTask (django-celery-beat's admin edits it)."""

    list_display = ["organisation", "vertical", "problem", "periodic_task", "owner",
                    "privacy_enabled", "last_tick_at", "last_outcome"]


@admin.register(ScoringJob)
class ScoringJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "model_version", "status", "rows_done", "rows_total", "created_at"]


@admin.register(DriftReport)
class DriftReportAdmin(ReadOnlyAdmin):
    list_display = ["id", "model_version", "dataset_version", "scoring_job", "drifted",
                    "created_at"]
