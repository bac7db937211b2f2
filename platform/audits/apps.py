from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_append_only_guards(using, **kwargs):
    """After every migrate, (re)install the append-only triggers on the history tables that
    exist: idempotent, and it restores triggers a future table rebuild on SQLite would drop."""
    from django.db import connections

    from audits.append_only import install_guard

    install_guard(connections[using])


class AuditsConfig(AppConfig):
    name = "audits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from audits.services import log_action, record_fairness_report
        from observability import audit_trail
        from training import lifecycle

        post_migrate.connect(_install_append_only_guards, dispatch_uid="tessera_append_only")
        # The apps below this one (accounts, ingestion, training) log through the port.
        audit_trail.register_writer(log_action)
        # A new model's fairness report is written here, on training's behalf.
        lifecycle.register_fairness_reports(record_fairness_report)
