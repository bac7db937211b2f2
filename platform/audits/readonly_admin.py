"""The Django admin's view of governance records: read-only.

Budgets, policies, gates, the ledger, model versions, runs and the audit log change only
through the app's services, which check the rules and write the audit entry; the admin is
the platform operators' window on them, never a side door around governance.
"""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and shows; no add, change or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
