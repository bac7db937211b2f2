from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connected here because Celery's Django fix-up runs django.setup() before the
        # worker configures its logging and before it signals that it is ready.
        from observability import worker_signals

        worker_signals.connect()
