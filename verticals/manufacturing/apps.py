from django.apps import AppConfig


class ManufacturingConfig(AppConfig):
    name = "verticals.manufacturing"
    label = "manufacturing"
    verbose_name = "Manufacturing"

    def ready(self) -> None:
        from verticals.manufacturing.vertical import VERTICAL
        from verticals.registry import register

        register(VERTICAL)
