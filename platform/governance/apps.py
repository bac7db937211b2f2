from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Model governance: privacy budget ledger, registry and promotion gates, model cards,
    predictions, scheduled retraining and drift."""

    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance import signals  # noqa: F401  (drift checks on new dataset versions)
