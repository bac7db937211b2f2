"""What a run needs from the apps above training, declared here and filled in by them.

The platform's apps have a direction (``pyproject.toml``'s import contracts): governance
and audits import training, never the reverse. Yet a run must be refused before it starts
when it would break its dataset's privacy budget, be charged to the ledger when it ends,
and, when it makes a model, get its fairness report (audits) and the registry's follow-ups
(governance). Training calls the hooks below; governance and audits register them when
Django starts (their ``AppConfig.ready``).

Privacy is fail-closed: with no ledger registered a run can neither start nor end (a run
that cannot be charged must not train), and a model cannot be recorded without its
fairness report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

# Stages a run passes before any private training step: a failure there spent nothing.
# ``encoding`` (the text encoder) and ``extracting_features`` (the image trunk) run the
# frozen pretrained part over the rows before training, and a cancel stops them now.
PRE_TRAINING_STAGES = frozenset({"", "queued", "starting", "preparing", "baseline",
                                 "encoding", "extracting_features"})


@dataclass(frozen=True)
class Ledger:
    """The privacy ledger, as training uses it (governance.ledger implements it)."""

    # (dataset=, membership=, privacy_requested=) -> None, or raises to refuse the run
    check_run_allowed: Callable[..., None]
    # (run_id, stage_before=) -> the entry charged, once per run
    charge_run: Callable[..., Any]


@dataclass(frozen=True)
class ModelHooks:
    """What follows a new model: its fairness report (audits), then the registry's own
    follow-ups (governance), in that order, inside the run's final transaction."""

    # (run=, passed=, report=, nonprivate_report=, policy=) -> the stored report
    record_fairness: Callable[..., Any]
    # (model_version) -> None
    on_model_created: Callable[[Any], None] = lambda model_version: None


_ledger: Ledger | None = None
_fairness: Callable[..., Any] | None = None
_model_created: Callable[[Any], None] | None = None


def register_ledger(ledger: Ledger) -> None:
    global _ledger
    _ledger = ledger


def register_fairness_reports(record: Callable[..., Any]) -> None:
    global _fairness
    _fairness = record


def register_model_created(hook: Callable[[Any], None]) -> None:
    global _model_created
    _model_created = hook


def ledger() -> Ledger:
    if _ledger is None:
        raise ImproperlyConfigured(
            "no privacy ledger is registered (the governance app): runs can neither be "
            "allowed nor charged, so none may start or end")
    return _ledger


def model_hooks() -> ModelHooks:
    if _fairness is None:
        raise ImproperlyConfigured(
            "no fairness-report writer is registered (the audits app): a model cannot be "
            "recorded without its fairness report")
    return ModelHooks(record_fairness=_fairness,
                      on_model_created=_model_created or (lambda model_version: None))
