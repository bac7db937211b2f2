"""The empirical privacy audit of a private tabular model (ml_core.privacy_audit), on request.

A reviewer or admin asks for it from the model card; that records a :class:`PrivacyAudit`
and a Celery task on the default queue (:func:`governance.tasks.audit_privacy`) retrains the
model's configuration once on the same dataset version, split and seed with planted
canaries, and stores the outcome in the run's result under ``privacy_audit``; the model card
shows the empirical epsilon lower bound beside the claimed epsilon. Nothing runs unless
asked, so no training pays for it.

The retraining uses the dataset's records, so it spends privacy like a run: the request
reserves the configuration's target epsilon on the dataset's ledger (refused when that does
not fit the remaining budget), and the audit is charged when it ends what its training's
accountant reports. A reviewer may cancel it (:func:`cancel_privacy_audit`), as a run is
cancelled: a cancelled audit stores no result and is charged the steps it took.
"""

from __future__ import annotations

import dataclasses
import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import REVIEWER_ROLES
from accounts.scoping import member_of
from audits.services import log_action
from catalog.families import family_of_model
from governance.ledger import (
    BudgetExceeded,
    charge_privacy_audit,
    check_budget,
    ledger_status,
    reserve_privacy_audit,
)
from governance.models import PrivacyAudit
from ingestion.services import load_frame
from ml_core import cancellation
from ml_core.data import encode_and_split
from ml_core.privacy_audit import DEFAULT_CANARIES, audit_tabular
from ml_core.privacy_ledger import fits
from ml_core.spec import ColumnMapping, PrivacyConfig
from training.models import ModelVersion, TrainingRun
from training.progress import CancelCheck, request_cancel
from training.results import json_safe
from training.services import privacy_config, train_config
from verticals.registry import get_problem

logger = logging.getLogger(__name__)

RESULT_KEY = "privacy_audit"
REFUSED_KEY = "privacy_audit_refused"  # the last refusal; an earlier audit's result stays


def check_auditable(model_version: ModelVersion) -> None:
    """ValueError (with the reason) when the model cannot be audited this way."""
    family = family_of_model(model_version)
    if not family.supports.privacy_audit:
        raise ValueError(f"the empirical privacy audit does not cover the {family.name} "
                         "family's models")
    if not (model_version.run.privacy or {}).get("enabled"):
        raise ValueError("this model was trained without differential privacy: there is "
                         "no claimed epsilon to audit")


def auditable(model_version: ModelVersion) -> bool:
    try:
        check_auditable(model_version)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class AuditCost:
    """What the audit would charge, shown to the reviewer before anything is spent."""

    charge_epsilon: float  # the configuration's whole target epsilon (an upper bound)
    model_epsilon: float | None  # what the audited model itself spent
    budget_epsilon: float  # the dataset's budget
    spent_epsilon: float  # spent so far, plus what runs in flight reserve
    remaining_epsilon: float
    fits: bool
    dataset_name: str

    @property
    def left_after(self) -> float:
        return max(0.0, self.remaining_epsilon - self.charge_epsilon)


def audit_cost(model_version: ModelVersion) -> AuditCost:
    """The epsilon the audit's retraining charges against where the dataset's ledger stands."""
    dataset = model_version.run.dataset_version.dataset
    status = ledger_status(dataset)
    charge = float(_audit_privacy(model_version.run).target_epsilon)
    committed = status.spent.epsilon + status.reserved
    return AuditCost(
        charge_epsilon=charge, model_epsilon=(model_version.run.privacy or {}).get("epsilon"),
        budget_epsilon=float(status.budget), spent_epsilon=float(committed),
        remaining_epsilon=float(status.remaining),
        fits=fits(budget=status.budget, spent=committed, request=charge),
        dataset_name=str(dataset.name))


def request_audit(*, model_version: ModelVersion, user) -> PrivacyAudit:
    """Queue the audit (reviewers and admins of the model's organisation), reserving its
    retraining's target epsilon; BudgetExceeded when that does not fit."""
    member_of(user, model_version, roles=REVIEWER_ROLES,
              refusal="only a reviewer or admin of this organisation can audit")
    check_auditable(model_version)
    with transaction.atomic():
        audit = reserve_privacy_audit(
            model_version=model_version, user=user,
            target_epsilon=_audit_privacy(model_version.run).target_epsilon)
        log_action(organisation=model_version.organisation, actor=user,
                   action="model.privacy_audit_requested", obj=model_version,
                   detail={"privacy_audit": audit.pk})

    def enqueue() -> None:
        from governance.tasks import audit_privacy

        audit_privacy.apply_async(args=[audit.pk], queue="default")

    transaction.on_commit(enqueue)
    return audit


def cancel_privacy_audit(*, audit: PrivacyAudit, user) -> PrivacyAudit:
    """Cancel a queued audit at once (nothing trained, nothing charged, its reservation
    freed); ask a running one to stop at its training's next step (charged the steps it
    took). Reviewers and admins of its organisation, as for requesting one. ValueError when
    it has already finished."""
    membership = member_of(user, audit, roles=REVIEWER_ROLES,
                           refusal="only a reviewer or admin of this organisation can "
                                   "cancel an audit")
    request_cancel(audit, organisation=membership.organisation, user=user,
                   action="privacy_audit", what=f"privacy audit {audit.pk}")
    return audit


def in_flight(model_version: ModelVersion) -> PrivacyAudit | None:
    """The model's audit that is queued or running, if any (the card offers its cancel)."""
    return model_version.privacy_audits.filter(status__in=PrivacyAudit.IN_FLIGHT).first()


def _audit_privacy(run: TrainingRun) -> PrivacyConfig:
    """The privacy configuration the audit retrains with: the run's own."""
    return privacy_config(get_problem(run.vertical, run.problem).spec,
                          run.privacy_requested or {})


def run_audit(audit_id: int, *, canaries: int = DEFAULT_CANARIES) -> dict | None:
    """Retrain the model's configuration with canaries, bound epsilon from below, store it;
    charge the ledger what the retraining spent. An audit no longer queued (cancelled, or a
    second delivery) is left alone; None unless it ended with a result or a refusal."""
    if not PrivacyAudit.objects.filter(pk=audit_id, status=PrivacyAudit.Status.QUEUED).update(
            status=PrivacyAudit.Status.RUNNING):
        return None
    audit = PrivacyAudit.objects.select_related(
        "model_version__run__dataset_version__dataset", "model_version__organisation").get(
        pk=audit_id)
    model_version = audit.model_version
    run = model_version.run
    spec = get_problem(run.vertical, run.problem).spec
    train = train_config(spec, run.config)
    privacy = _audit_privacy(run)
    try:
        check_auditable(model_version)
        # Refused here too when the budget was lowered after the request (it holds its own
        # reservation already).
        check_budget(dataset=run.dataset_version.dataset, request=audit.target_epsilon,
                     what="the privacy audit's retraining", reserved_by_it=audit.target_epsilon)
    except (BudgetExceeded, ValueError) as exc:
        _finish(audit, PrivacyAudit.Status.FAILED, privacy={}, message=str(exc))  # no step taken
        log_action(organisation=model_version.organisation, actor=None,
                   action="model.privacy_audit_refused", obj=model_version,
                   detail={"reason": str(exc)})
        return _store(run, REFUSED_KEY, {"refused": str(exc)})
    training = False
    try:
        with cancellation.stop_when(CancelCheck(audit.pk, model=PrivacyAudit)):
            mapping = ColumnMapping.from_dict(run.dataset_version.mapping)
            person_column = spec.privacy_unit.column(mapping)
            split = encode_and_split(load_frame(run.dataset_version), mapping, train,
                                     target_rule=spec.target_rule, person_column=person_column)
            training = True
            # With a person column the canaries are persons of several rows (within the
            # bound), so the audit tests the person-level claim the model makes.
            outcome = audit_tabular(split, train=train, privacy=privacy, canaries=canaries,
                                    seed=train.seed, primary_metric=spec.primary_metric,
                                    rows_per_canary=min(4, privacy.max_rows_per_person)
                                    if person_column else 1)
    except cancellation.TrainingCancelled as cancelled:
        # Nothing published; the steps it took are spent all the same.
        entry = _finish(audit, PrivacyAudit.Status.CANCELLED, privacy=cancelled.privacy)
        log_action(organisation=model_version.organisation, actor=None,
                   action="model.privacy_audit_cancelled", obj=model_version,
                   detail={"privacy_audit": audit.pk,
                           "steps": int((cancelled.privacy or {}).get("steps") or 0),
                           "charged_epsilon": entry.epsilon if entry else 0.0})
        return None
    except Exception as exc:  # recorded on the audit; the worker stays up
        logger.exception("privacy audit %s failed", audit.pk)
        # Once training began the steps taken are unknown: its whole target.
        _finish(audit, PrivacyAudit.Status.FAILED, privacy=None if training else {},
                message=f"{type(exc).__name__}: {exc}"[:2000], delta=privacy.delta)
        return None
    charge = _finish(audit, PrivacyAudit.Status.SUCCEEDED, privacy=outcome.privacy)
    summary = json_safe({**outcome.to_dict(),
                         "model_epsilon": (run.privacy or {}).get("epsilon"),
                         "ledger": {"charged_epsilon": charge.epsilon if charge else 0.0,
                                    "dataset_total_after": charge.total_epsilon_after
                                    if charge else None}})
    log_action(organisation=model_version.organisation, actor=None,
               action="model.privacy_audited", obj=model_version,
               detail={"epsilon_lower_bound": summary["epsilon_lower_bound"],
                       "claimed_epsilon": summary["claimed_epsilon"],
                       "consistent": summary["consistent"]})
    return _store(run, RESULT_KEY, summary)


def _finish(audit: PrivacyAudit, status: str, *, privacy: dict | None, message: str = "",
            delta: float | None = None):
    """End the audit (its reservation freed) and charge what it spent, in one transaction:
    the ledger never shows both the reservation and the charge, or neither."""
    with transaction.atomic():
        PrivacyAudit.objects.filter(pk=audit.pk).update(
            status=status, message=message, finished_at=timezone.now())
        audit.status = status
        return charge_privacy_audit(audit, privacy=privacy, delta=delta)


def _store(run: TrainingRun, key: str, summary: dict) -> dict:
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        result = {k: v for k, v in (locked.result or {}).items() if k != REFUSED_KEY}
        locked.result = {**result, key: summary}
        locked.save(update_fields=["result"])
    return summary
