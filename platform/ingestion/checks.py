"""System checks of the ingestion settings (``manage.py check``, migrate, runserver)."""

from __future__ import annotations

from django.core import checks


def check_encryption_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Uploads are encrypted at rest: the keys must parse, and production must set them."""
    from ingestion.storage import KEYS_SETTING, key_problem

    problem = key_problem()
    if problem is None:
        return []
    return [checks.Error(problem, hint=f"Set {KEYS_SETTING} in the environment "
                         "(see docs/operations.md, 'Encryption keys').", id="ingestion.E001")]
