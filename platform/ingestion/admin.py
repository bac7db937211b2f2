from django.contrib import admin

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
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "organisation", "vertical", "problem", "created_by", "created_at"]
    list_filter = ["organisation", "vertical", "problem"]
    search_fields = ["name"]
    inlines = [DatasetVersionInline]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    """Versions are immutable uploads: read here, changed only through ingestion.services."""

    list_display = ["dataset", "number", "status", "original_filename", "size_bytes", "created_at"]
    list_filter = ["status"]
    search_fields = ["dataset__name", "original_filename", "sha256"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
