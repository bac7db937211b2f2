from django.contrib import admin

from audits.models import AuditLogEntry, FairnessReport, Review
from audits.readonly_admin import ReadOnlyAdmin


@admin.register(FairnessReport)
class FairnessReportAdmin(ReadOnlyAdmin):
    list_display = ["run", "passed", "created_at"]
    list_filter = ["passed"]


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    """Reviews are made in the app (through audits.services.review_model), only read here."""

    list_display = ["model_version", "decision", "reviewer", "created_at"]
    list_filter = ["decision"]


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organisation", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "organisation"]
    search_fields = ["action", "object_type", "object_id"]
