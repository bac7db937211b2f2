from django.apps import AppConfig


class EducationConfig(AppConfig):
    name = "verticals.education"
    label = "education"
    verbose_name = "Education"

    def ready(self) -> None:
        from verticals.education.vertical import VERTICAL
        from verticals.registry import register

        register(VERTICAL)
