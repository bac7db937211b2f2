"""The audit trail's port for the apps below ``audits`` (accounts, ingestion, training).

The platform's apps have a direction (``pyproject.toml``'s import contracts: governance,
audits, training, ingestion, catalog, accounts, observability, each importing only those
after it). The audit log's rows live in ``audits``, above the apps that must write them;
so those apps write through this port, and ``audits`` registers the writer when Django
starts (``AuditsConfig.ready``). Fail-closed: with no writer registered, writing raises
instead of losing the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_writer: Callable[..., Any] | None = None


class NoAuditTrail(RuntimeError):
    """An action was to be logged before the audits app registered its writer."""


def register_writer(writer: Callable[..., Any]) -> None:
    """``writer(organisation=, actor=, action=, obj=, detail=)`` appends one entry."""
    global _writer
    _writer = writer


def log_action(*, organisation, actor, action: str, obj, detail: dict | None = None) -> Any:
    """Append one entry to the audit log (``audits.services.log_action``'s contract)."""
    if _writer is None:
        raise NoAuditTrail(f"cannot log {action!r}: the audits app is not installed or ready")
    return _writer(organisation=organisation, actor=actor, action=action, obj=obj,
                   detail=detail)
