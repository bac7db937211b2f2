from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from ingestion.checks import check_encryption_keys

        checks.register(check_encryption_keys, "tessera")
