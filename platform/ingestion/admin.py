from django.contrib import admin

from audits.readonly_admin import ReadOnlyAdmin
from ingestion.models import Dataset, DatasetVersion


class DatasetVersionInline(admin.TabularInline):
    model = DatasetVersion
    extra = 0
    fields = ["number", "original_filename", "status", "size_bytes", "sha256", "created_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    """Read-only: moving a dataset to another organisation here would hand its data over."""

    list_display = ["name", "organisation", "vertical", "problem", "created_by", "created_at"]
    list_filter = ["organisation", "vertical", "problem"]
    search_fields = ["name"]
    inlines = [DatasetVersionInline]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    """Versions are immutable uploads: read here, changed only through ingestion.services."""

    list_display = ["dataset", "number", "status", "original_filename", "size_bytes", "created_at"]
    list_filter = ["status"]
    search_fields = ["dataset__name", "original_filename", "sha256"]
