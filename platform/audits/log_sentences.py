"""Audit log entries as sentences with rounded numbers ("admin changed the gates of
finance / credit_risk: max epsilon 3 → 2."), never as Python dicts. The stored detail stays
complete; this only says it."""

from __future__ import annotations

from django.apps import apps

from audits.models import AuditLogEntry

# action -> (verb phrase, whether the object is named after it)
VERBS = {
    "dataset.uploaded": "uploaded", "dataset.validated": "validated",
    "dataset.policy_changed": "changed the privacy policy of",
    "dataset.identifier_allowed": "allowed an identifier column in",
    "dataset.companion_attached": "attached a companion file to",
    "dataset.codebook_changed": "renamed columns or labelled codes of",
    "run.started": "started", "run.succeeded": "finished", "run.failed": "recorded a failure of",
    "run.cancelled": "cancelled", "run.cancel_requested": "asked to cancel",
    "run.resumed": "resumed", "scoring.cancelled": "cancelled",
    "scoring.cancel_requested": "asked to cancel", "privacy_audit.cancelled": "cancelled",
    "privacy_audit.cancel_requested": "asked to cancel",
    "model.privacy_audit_cancelled": "stopped, as asked, the empirical privacy audit of",
    "model.created": "registered", "model.reviewed": "reviewed",
    "model.mitigated": "mitigated", "model.privacy_audit_requested":
    "asked for an empirical privacy audit of", "model.privacy_audited":
    "recorded the empirical privacy audit of", "model.privacy_audit_refused":
    "refused the empirical privacy audit of", "gates.changed": "changed the gates of",
    "schedule.set": "set the retraining schedule of", "drift.checked": "checked drift for",
    "ledger.charged": "charged the privacy ledger for", "scoring.started": "started scoring with",
    "retrain.started": "started a scheduled retrain of", "retrain.skipped":
    "skipped a scheduled retrain of", "retrain.refused": "refused a scheduled retrain of",
}
NAMES = {"epsilon": "ε", "total_epsilon": "total ε", "max_psi": "largest PSI",
         "max_epsilon": "maximum ε", "budget_epsilon": "budget ε"}


def number(value: object) -> str:
    """Floats to at most three decimals, without trailing zeros; the rest as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        return text if text not in ("-0", "") else "0"
    if value is None:
        return "–"
    if isinstance(value, list | tuple):
        return ", ".join(number(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{_name(k)} {number(v)}" for k, v in sorted(value.items())) \
            or "nothing"
    return str(value)


def _name(key: str) -> str:
    return NAMES.get(key, str(key).replace("_", " "))


def _details(detail: dict) -> str:
    # Keys in a fixed order: PostgreSQL's jsonb does not keep the order they were written in.
    before, after = detail.get("before"), detail.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        changed = [f"{_name(k)} {number(before.get(k))} → {number(after.get(k))}"
                   for k in sorted(after) if before.get(k) != after.get(k)]
        rest = {k: v for k, v in detail.items() if k not in ("before", "after")}
        return ", ".join(changed or ["nothing changed"]) + (
            f"; {_details(rest)}" if rest else "")
    return "; ".join(f"{_name(k)} {number(v)}" for k, v in sorted(detail.items()))


def _noun(object_type: str) -> str:
    """What the entry is about, as people say it: the model's verbose name ("dataset
    version", "training run") for its ``app.model`` label; the label itself if unknown."""
    if not object_type:
        return ""
    try:
        return str(apps.get_model(object_type)._meta.verbose_name)
    except (LookupError, ValueError):
        return object_type.replace("_", " ")


def sentence(entry: AuditLogEntry) -> str:
    who = entry.actor.get_username() if entry.actor_id else "The system"
    verb = VERBS.get(entry.action, entry.action.replace(".", " ").replace("_", " "))
    obj = f"{_noun(entry.object_type)} {entry.object_id}".strip()
    text = f"{who} {verb} {obj}"
    detail = _details(entry.detail or {}) if isinstance(entry.detail, dict) else ""
    return f"{text}: {detail}." if detail else f"{text}."
