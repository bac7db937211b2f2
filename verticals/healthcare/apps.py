from django.apps import AppConfig


class HealthcareConfig(AppConfig):
    name = "verticals.healthcare"
    label = "healthcare"
    verbose_name = "Healthcare"

    def ready(self) -> None:
        from verticals.healthcare.vertical import VERTICAL
        from verticals.registry import register

        register(VERTICAL)
