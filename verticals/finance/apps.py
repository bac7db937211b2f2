from django.apps import AppConfig


class FinanceConfig(AppConfig):
    name = "verticals.finance"
    label = "finance"
    verbose_name = "Finance"

    def ready(self) -> None:
        from verticals.finance.vertical import VERTICAL
        from verticals.registry import register

        register(VERTICAL)
