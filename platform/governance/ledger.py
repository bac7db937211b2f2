"""The privacy budget ledger of each dataset.

Every private run charges what it spent to its dataset's ledger when it ends: succeeded and
cancelled runs their accountant's numbers (a cancel keeps the steps taken), failed runs
that had started training their whole target epsilon (the steps taken before the failure
are not known; the target bounds them). The ledger's total is the composition across runs
(``ml_core.privacy_ledger.compose``). :func:`check_run_allowed` refuses, before it starts,
a run whose target would take the total past the dataset's budget, counting the targets of
runs still queued or running, and a non-private run on personal data without an admin's
permission.
"""

from __future__ import annotations

import dataclasses
import logging

from django.core.exceptions import PermissionDenied
from django.db import transaction

from accounts.models import Membership, Role
from accounts.permissions import require_role
from accounts.scoping import member_of
from audits import figures
from audits.services import log_action
from governance.models import DatasetPolicy, LedgerEntry, PrivacyAudit
from ingestion.models import Dataset
from ml_core.privacy import DEFAULT_DELTA
from ml_core.privacy_ledger import (
    BASIC,
    Charge,
    Composition,
    basic_composition,
    compose,
    fits,
    remaining,
)
from ml_core.spec import ProblemSpec
from training.lifecycle import PRE_TRAINING_STAGES
from training.models import TrainingRun
from verticals.registry import get_problem

logger = logging.getLogger(__name__)

IN_FLIGHT = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)


class BudgetExceeded(ValueError):
    """A run would take its dataset past its privacy budget."""


class NonPrivateRunRefused(PermissionDenied):
    """A non-private run on personal data without an admin's permission."""


def _spec(dataset: Dataset) -> ProblemSpec:
    return get_problem(dataset.vertical, dataset.problem).spec


def default_personal_data(spec: ProblemSpec) -> bool:
    """Personal unless the problem audits operational groups or trains without privacy by
    default (store sales, machine sensors): those verticals declared their data impersonal."""
    return getattr(spec.fairness, "kind", "personal") != "operational" and spec.privacy.enabled


def policy_for(dataset: Dataset) -> DatasetPolicy:
    """The dataset's policy, created with the problem's defaults on first use."""
    policy = DatasetPolicy.objects.filter(dataset=dataset).first()
    if policy is not None:
        return policy
    spec = _spec(dataset)
    policy, _ = DatasetPolicy.objects.get_or_create(
        dataset=dataset,
        defaults={"budget_epsilon": float(spec.dataset_budget_epsilon),
                  "personal_data": default_personal_data(spec)},
    )
    return policy


def set_dataset_policy(
    *, dataset: Dataset, user, budget_epsilon: float | None = None,
    personal_data: bool | None = None, nonprivate_allowed: bool | None = None,
) -> DatasetPolicy:
    """Admins only: change a dataset's budget, personal flag or non-private permission."""
    require_role(user, Role.ADMIN)
    member_of(user, dataset)
    policy = policy_for(dataset)
    before = {"budget_epsilon": policy.budget_epsilon, "personal_data": policy.personal_data,
              "nonprivate_allowed": policy.nonprivate_allowed}
    if budget_epsilon is not None:
        if not float(budget_epsilon) > 0:
            raise ValueError("the budget must be a positive epsilon")
        policy.budget_epsilon = float(budget_epsilon)
    if personal_data is not None:
        policy.personal_data = bool(personal_data)
    if nonprivate_allowed is not None:
        policy.nonprivate_allowed = bool(nonprivate_allowed)
    policy.updated_by = user
    with transaction.atomic():
        policy.save()
        after = {key: getattr(policy, key) for key in before}
        log_action(organisation=dataset.organisation, actor=user, action="dataset.policy_changed",
                   obj=dataset, detail={"before": before, "after": after})
    return policy


def _charge(entry: LedgerEntry) -> Charge:
    return Charge(epsilon=entry.epsilon, delta=entry.delta,
                  noise_multiplier=entry.noise_multiplier, sample_rate=entry.sample_rate,
                  steps=entry.steps)


@dataclasses.dataclass(frozen=True)
class LedgerStatus:
    """Where a dataset stands: budget, composed spend, what runs in flight may still spend."""

    budget: float
    spent: Composition
    reserved: float
    remaining: float
    entries: tuple[LedgerEntry, ...]

    def to_dict(self) -> dict:
        return {
            "budget_epsilon": self.budget,
            "spent": self.spent.to_dict(),
            "reserved_epsilon": self.reserved,
            "remaining_epsilon": self.remaining,
            "entries": [
                {"run": e.run_id, "purpose": e.purpose, "audited_model": e.audited_model_id,
                 "run_status": e.run_status, "basis": e.basis,
                 "epsilon": e.epsilon, "delta": e.delta, "noise_multiplier": e.noise_multiplier,
                 "sample_rate": e.sample_rate, "steps": e.steps,
                 "total_epsilon_after": e.total_epsilon_after,
                 "created_at": e.created_at.isoformat()}
                for e in self.entries
            ],
        }


def _reserved(dataset: Dataset, *, exclude_run: int | None = None) -> float:
    runs = TrainingRun.objects.filter(dataset_version__dataset=dataset, status__in=IN_FLIGHT)
    if exclude_run is not None:
        runs = runs.exclude(pk=exclude_run)
    total = 0.0
    for requested in runs.values_list("privacy_requested", flat=True):
        if requested.get("enabled", True):
            total += float(requested.get("target_epsilon") or 0.0)
    # Empirical privacy audits in flight reserve their retraining's target the same way.
    total += sum(PrivacyAudit.objects.filter(
        model_version__run__dataset_version__dataset=dataset,
        status__in=PrivacyAudit.IN_FLIGHT).values_list("target_epsilon", flat=True))
    return total


def _spent(entries: tuple[LedgerEntry, ...]) -> Composition:
    """The composed total as the latest charge recorded it (composition is slow: seconds)."""
    basic_eps, total_delta = basic_composition(_charge(e) for e in entries)
    if not entries:
        return Composition(epsilon=0.0, delta=0.0, method=BASIC, basic_epsilon=0.0, n_charges=0)
    last = entries[-1]
    return Composition(epsilon=last.total_epsilon_after, delta=total_delta,
                       method=last.composition, basic_epsilon=basic_eps, n_charges=len(entries))


def ledger_status(dataset: Dataset) -> LedgerStatus:
    policy = policy_for(dataset)
    entries = tuple(LedgerEntry.objects.filter(dataset=dataset).select_related("run"))
    spent = _spent(entries)
    reserved = _reserved(dataset)
    return LedgerStatus(
        budget=policy.budget_epsilon, spent=spent, reserved=reserved,
        remaining=remaining(budget=policy.budget_epsilon, spent=spent.epsilon + reserved),
        entries=entries,
    )


def check_run_allowed(*, dataset: Dataset, membership: Membership, privacy_requested: dict
                      ) -> None:
    """Refuse a run before it starts: NonPrivateRunRefused (non-private on personal data,
    not an admin and no admin permission) or BudgetExceeded (with the remaining budget)."""
    policy = policy_for(dataset)
    # Inside the caller's transaction this serialises checks on one dataset (PostgreSQL).
    policy = DatasetPolicy.objects.select_for_update().get(pk=policy.pk)
    if not privacy_requested.get("enabled", True):
        if policy.personal_data and not (membership.is_admin or policy.nonprivate_allowed):
            raise NonPrivateRunRefused(
                "this dataset holds personal data: training without differential privacy "
                "needs an admin (or an admin's permission on the dataset)"
            )
        return
    check_budget(dataset=dataset, request=float(privacy_requested.get("target_epsilon") or 0.0),
                 what="this run")


def check_budget(*, dataset: Dataset, request: float, what: str,
                 reserved_by_it: float = 0.0) -> None:
    """BudgetExceeded unless ``request`` more epsilon fits the dataset's remaining budget
    (spent plus what runs and audits in flight have reserved, less ``reserved_by_it``: the
    request's own reservation, when it already holds one)."""
    status = ledger_status(dataset)
    others = status.reserved - reserved_by_it
    committed = status.spent.epsilon + others
    if not fits(budget=status.budget, spent=committed, request=request):
        raise BudgetExceeded(
            f"refused: {what} may spend ε = {request:g}, but only ε = "
            f"{figures.epsilon(remaining(budget=status.budget, spent=committed))} of the "
            f"dataset's privacy budget ε = {status.budget:g} remains (spent "
            f"{figures.epsilon(status.spent.epsilon)}, reserved by runs and audits in "
            f"progress {figures.epsilon(others)})"
        )


def _charge_for(run: TrainingRun, *, stage_before: str | None) -> dict | None:
    requested = run.privacy_requested or {}
    if not requested.get("enabled", True):
        return None
    if run.status == TrainingRun.Status.CANCELLED and not run.privacy and (
            stage_before or "") not in PRE_TRAINING_STAGES:
        # Cancelled between stages after private training began (the run's cancel check
        # stops it at every stage boundary), with no report of what it spent: its whole
        # target, like a failure.
        return upper_bound_charge(requested)
    if run.status in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.CANCELLED):
        return accounted_charge(run.privacy or {})  # None: stopped before any private step
    if run.status == TrainingRun.Status.FAILED:
        if (stage_before or "") in PRE_TRAINING_STAGES:
            return None
        return upper_bound_charge(requested)
    return None


def charge_run(run_id: int, *, stage_before: str | None = None) -> LedgerEntry | None:
    """Charge a finished run's privacy to its dataset's ledger (once; later calls do nothing).

    ``stage_before`` is the stage the run was in when it ended (for a failed run: whether
    private training had started).
    """
    run = TrainingRun.objects.select_related("dataset_version__dataset").get(pk=run_id)
    if LedgerEntry.objects.filter(run=run).exists():
        return None
    values = _charge_for(run, stage_before=stage_before)
    if values is None or values["epsilon"] <= 0:
        return None
    entry = _append(run.dataset_version.dataset, values, run=run, run_status=run.status)
    logger.info("run %s charged ε=%.4f to dataset %s (total %.4f)", run.pk, values["epsilon"],
                entry.dataset_id, entry.total_epsilon_after)
    return entry


def accounted_charge(report: dict) -> dict | None:
    """A training's own privacy report (epsilon, delta, noise, sample rate, steps) as a
    ledger charge; None when it took no private step."""
    steps = int(report.get("steps") or 0)
    if not report.get("enabled") or steps <= 0 or report.get("epsilon") is None:
        return None
    # A run whose epsilon composes preprocessing with its SGD steps is charged that one
    # figure; its SGD history alone would under-count it when runs are composed together.
    composed = bool(report.get("stages"))
    return {"basis": LedgerEntry.Basis.ACCOUNTED, "epsilon": float(report["epsilon"]),
            "delta": float(report["delta"]),
            "noise_multiplier": None if composed else report.get("noise_multiplier"),
            "sample_rate": None if composed else report.get("sample_rate"), "steps": steps}


def upper_bound_charge(requested: dict) -> dict:
    """A training that failed after it started: its whole target (the delta actually used
    is never above the requested one, or 1e-5 by default)."""
    return {"basis": LedgerEntry.Basis.UPPER_BOUND,
            "epsilon": float(requested.get("target_epsilon") or 0.0),
            "delta": float(requested.get("delta") or DEFAULT_DELTA),
            "noise_multiplier": None, "sample_rate": None, "steps": 0}


def reserve_privacy_audit(*, model_version, user, target_epsilon: float) -> PrivacyAudit:
    """Queue an empirical privacy audit, reserving its retraining's target epsilon on the
    dataset's ledger (checked against the budget and recorded under the policy's lock, so
    two requests cannot both slip in). BudgetExceeded when it does not fit."""
    dataset = model_version.run.dataset_version.dataset
    with transaction.atomic():
        policy_for(dataset)
        DatasetPolicy.objects.select_for_update().get(dataset=dataset)
        check_budget(dataset=dataset, request=target_epsilon,
                     what="the privacy audit's retraining")
        return PrivacyAudit.objects.create(
            organisation=model_version.organisation, model_version=model_version,
            target_epsilon=float(target_epsilon), created_by=user)


def charge_privacy_audit(audit: PrivacyAudit, *, privacy: dict | None,
                         delta: float | None = None) -> LedgerEntry | None:
    """Charge an empirical privacy audit's retraining to the audited model's dataset when it
    ends (the audit trains on the same records, and what it publishes is computed from that
    training): ``privacy``, its training's own report (also a cancelled one's: the steps it
    took), or None for a failure after it began training, charged its whole target (the
    steps taken are not known). A training that took no private step is charged nothing.
    Its reservation held the budget meanwhile, so nothing is refused here: the spend
    happened. Links the entry to the audit."""
    model_version = audit.model_version
    dataset = model_version.run.dataset_version.dataset
    values = (upper_bound_charge({"target_epsilon": audit.target_epsilon, "delta": delta})
              if privacy is None else accounted_charge(privacy))
    if values is None or values["epsilon"] <= 0:
        return None
    entry = _append(dataset, values, purpose=LedgerEntry.Purpose.PRIVACY_AUDIT,
                    audited_model=model_version, run_status=audit.status)
    PrivacyAudit.objects.filter(pk=audit.pk).update(ledger_entry=entry)
    logger.info("privacy audit %s of model %s charged ε=%.4f to dataset %s (total %.4f)",
                audit.pk, model_version.pk, values["epsilon"], dataset.pk,
                entry.total_epsilon_after)
    return entry


def _append(dataset: Dataset, values: dict, *, over_budget: str | None = None,
            **link) -> LedgerEntry:
    """Compose ``values`` with the dataset's earlier charges and append the entry, under a
    lock on the dataset's policy. With ``over_budget`` (what is charged, for the message),
    first refuse with BudgetExceeded, under the same lock, a charge that does not fit."""
    with transaction.atomic():
        policy_for(dataset)
        # Serialise charges to one dataset (a row lock on PostgreSQL).
        DatasetPolicy.objects.select_for_update().get(dataset=dataset)
        if over_budget is not None:
            check_budget(dataset=dataset, request=values["epsilon"], what=over_budget)
        previous = [_charge(e) for e in LedgerEntry.objects.filter(dataset=dataset)]
        total = compose([*previous, Charge(**{k: values[k] for k in (
            "epsilon", "delta", "noise_multiplier", "sample_rate", "steps")})])
        entry = LedgerEntry.objects.create(dataset=dataset, total_epsilon_after=total.epsilon,
                                           composition=total.method, **link, **values)
        subject = link.get("run") or link.get("audited_model")
        log_action(organisation=dataset.organisation, actor=None, action="ledger.charged",
                   obj=subject, detail={"dataset": dataset.pk, "epsilon": values["epsilon"],
                                        "basis": values["basis"], "purpose": entry.purpose,
                                        "total_epsilon": total.epsilon,
                                        "composition": total.method})
    return entry
