from django.contrib import admin

from audits.models import AuditLogEntry, FairnessReport, Review


@admin.register(FairnessReport)
class FairnessReportAdmin(admin.ModelAdmin):
    list_display = ["run", "passed", "created_at"]
    list_filter = ["passed"]
    readonly_fields = ["run", "passed", "report", "nonprivate_report", "policy", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """Reviews are made in the app (through audits.services.review_model), only read here."""

    list_display = ["model_version", "decision", "reviewer", "created_at"]
    list_filter = ["decision"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "organisation", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "organisation"]
    search_fields = ["action", "object_type", "object_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
