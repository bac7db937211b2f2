from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery import signals as celery_signals
        from django.core import checks
        from django.core.signals import request_finished

        from ingestion.checks import check_encryption_keys
        from ingestion.services import forget_plaintext

        checks.register(check_encryption_keys, "tessera")
        # Decrypted uploads and their parse live for one request or one task.
        request_finished.connect(forget_plaintext, dispatch_uid="tessera_forget_plaintext")
        celery_signals.task_postrun.connect(forget_plaintext, weak=False,
                                            dispatch_uid="tessera_forget_plaintext")
