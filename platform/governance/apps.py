from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Model governance: privacy budget ledger, registry and promotion gates, model cards,
    predictions, scheduled retraining and drift."""

    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance import signals  # noqa: F401  (drift checks on new dataset versions)
        from governance.ledger import charge_run, check_run_allowed
        from governance.registry import on_model_created
        from training import lifecycle

        # Training refuses and charges runs through the ledger, and hands new models to the
        # registry, without importing governance (training.lifecycle).
        lifecycle.register_ledger(lifecycle.Ledger(check_run_allowed=check_run_allowed,
                                                   charge_run=charge_run))
        lifecycle.register_model_created(on_model_created)
