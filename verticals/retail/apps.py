from django.apps import AppConfig


class RetailConfig(AppConfig):
    name = "verticals.retail"
    label = "retail"
    verbose_name = "Retail"

    def ready(self) -> None:
        from verticals.registry import register
        from verticals.retail.vertical import VERTICAL

        register(VERTICAL)
