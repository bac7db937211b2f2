from django.apps import AppConfig


class RetailConfig(AppConfig):
    name = "verticals.retail"
    label = "retail"
    verbose_name = "Retail"

    def ready(self) -> None:
        from verticals.retail.vertical import VERTICAL
        from verticals.registry import register

        register(VERTICAL)
