"""The empirical privacy audit of a private tabular model (ml_core.privacy_audit), on request.

A reviewer or admin asks for it from the model card; a Celery task on the default queue
(:func:`governance.tasks.audit_privacy`) retrains the model's configuration once on the
same dataset version, split and seed with planted canaries, and stores the outcome in the
run's result under ``privacy_audit``; the model card shows the empirical epsilon lower bound
beside the claimed epsilon. Nothing runs unless asked, so no training pays for it.

The retraining uses the dataset's records, so it spends privacy like a run: it is charged
to the dataset's ledger (the configuration's whole target epsilon, before it trains) and
refused when that does not fit the remaining budget.
"""

from __future__ import annotations

import dataclasses

from django.db import transaction

from accounts.models import REVIEWER_ROLES
from accounts.scoping import member_of
from audits.services import log_action
from catalog.families import family_of_model
from governance.ledger import BudgetExceeded, charge_privacy_audit, check_budget, ledger_status
from ingestion.services import load_frame
from ml_core.data import encode_and_split
from ml_core.privacy_audit import DEFAULT_CANARIES, audit_tabular
from ml_core.privacy_ledger import fits
from ml_core.spec import ColumnMapping, PrivacyConfig
from training.models import ModelVersion, TrainingRun
from training.results import json_safe
from training.services import privacy_config, train_config
from verticals.registry import get_problem

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


def request_audit(*, model_version: ModelVersion, user) -> None:
    """Queue the audit (reviewers and admins of the model's organisation)."""
    member_of(user, model_version, roles=REVIEWER_ROLES,
              refusal="only a reviewer or admin of this organisation can audit")
    check_auditable(model_version)
    check_budget(dataset=model_version.run.dataset_version.dataset,
                 request=_audit_privacy(model_version.run).target_epsilon,
                 what="the privacy audit's retraining")
    log_action(organisation=model_version.organisation, actor=user,
               action="model.privacy_audit_requested", obj=model_version)

    def enqueue() -> None:
        from governance.tasks import audit_privacy

        audit_privacy.apply_async(args=[model_version.pk], queue="default")

    transaction.on_commit(enqueue)


def _audit_privacy(run: TrainingRun) -> PrivacyConfig:
    """The privacy configuration the audit retrains with: the run's own."""
    return privacy_config(get_problem(run.vertical, run.problem).spec,
                          run.privacy_requested or {})


def run_audit(model_version_id: int, *, canaries: int = DEFAULT_CANARIES) -> dict:
    """Retrain the model's configuration with canaries, bound epsilon from below, store it."""
    model_version = ModelVersion.objects.select_related(
        "run__dataset_version__dataset", "organisation").get(pk=model_version_id)
    check_auditable(model_version)
    run = model_version.run
    spec = get_problem(run.vertical, run.problem).spec
    train = train_config(spec, run.config)
    privacy = _audit_privacy(run)
    try:
        charge = charge_privacy_audit(model_version, target_epsilon=privacy.target_epsilon,
                                      delta=privacy.delta)
    except BudgetExceeded as exc:
        log_action(organisation=model_version.organisation, actor=None,
                   action="model.privacy_audit_refused", obj=model_version,
                   detail={"reason": str(exc)})
        return _store(run, REFUSED_KEY, {"refused": str(exc)})
    mapping = ColumnMapping.from_dict(run.dataset_version.mapping)
    person_column = spec.privacy_unit.column(mapping)
    split = encode_and_split(load_frame(run.dataset_version), mapping, train,
                             target_rule=spec.target_rule, person_column=person_column)
    # With a person column the canaries are persons of several rows (within the bound), so
    # the audit tests the person-level claim the model makes.
    outcome = audit_tabular(split, train=train, privacy=privacy, canaries=canaries,
                            seed=train.seed, primary_metric=spec.primary_metric,
                            rows_per_canary=min(4, privacy.max_rows_per_person)
                            if person_column else 1)
    summary = json_safe({**outcome.to_dict(),
                         "model_epsilon": (run.privacy or {}).get("epsilon"),
                         "ledger": {"charged_epsilon": charge.epsilon,
                                    "dataset_total_after": charge.total_epsilon_after}})
    log_action(organisation=model_version.organisation, actor=None,
               action="model.privacy_audited", obj=model_version,
               detail={"epsilon_lower_bound": summary["epsilon_lower_bound"],
                       "claimed_epsilon": summary["claimed_epsilon"],
                       "consistent": summary["consistent"]})
    return _store(run, RESULT_KEY, summary)


def _store(run: TrainingRun, key: str, summary: dict) -> dict:
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        result = {k: v for k, v in (locked.result or {}).items() if k != REFUSED_KEY}
        locked.result = {**result, key: summary}
        locked.save(update_fields=["result"])
    return summary
