"""The audit trail and the human decision on a model.

A ModelVersion becomes approved only through :func:`review_model`.
"""

from __future__ import annotations

from django.db import models, transaction
from django.utils import timezone

from accounts.models import REVIEWER_ROLES, Organisation
from accounts.scoping import member_of
from audits.models import AuditLogEntry, FairnessReport, Review
from training.models import ModelVersion

_DECISION_STATUS = {
    Review.Decision.APPROVE: ModelVersion.Status.APPROVED,
    Review.Decision.REJECT: ModelVersion.Status.REJECTED,
}


def log_action(
    *, organisation: Organisation, actor, action: str, obj: models.Model | None,
    detail: dict | None = None,
) -> AuditLogEntry:
    """Append one row to the audit log. ``actor`` None means the system (a worker, a schedule)."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditLogEntry.objects.create(
        organisation=organisation,
        actor=actor,
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        detail=detail or {},
    )


def record_fairness_report(*, run, passed: bool, report: dict, nonprivate_report: dict,
                           policy: dict) -> FairnessReport:
    """Store a new model's fairness report (training calls it through training.lifecycle)."""
    return FairnessReport.objects.create(run=run, passed=passed, report=report,
                                         nonprivate_report=nonprivate_report, policy=policy)


def review_model(*, model_version: ModelVersion, user, decision: str, comment: str) -> Review:
    """Record a reviewer's decision and move the model to approved or rejected.

    PermissionDenied unless the user is a reviewer or admin of the model's organisation;
    ValueError on an unknown decision, a blank comment, or a model already decided.
    """
    membership = member_of(
        user, model_version, roles=REVIEWER_ROLES,
        refusal="only a reviewer or admin of this organisation can review models")
    if decision not in _DECISION_STATUS:
        raise ValueError(f"decision must be one of {sorted(_DECISION_STATUS)}")
    comment = (comment or "").strip()
    if not comment:
        raise ValueError("a comment is required: say why")
    new_status = _DECISION_STATUS[Review.Decision(decision)]
    now = timezone.now()
    with transaction.atomic():
        # Compare-and-set: two reviewers deciding at once cannot both win.
        changed = ModelVersion.objects.filter(
            pk=model_version.pk, status__in=ModelVersion.UNDECIDED
        ).update(status=new_status, decided_at=now)
        if not changed:
            raise ValueError("this model has already been decided")
        review = Review.objects.create(
            model_version=model_version, reviewer=user, decision=decision, comment=comment
        )
        log_action(
            organisation=membership.organisation,
            actor=user,
            action=f"model.{'approved' if decision == Review.Decision.APPROVE else 'rejected'}",
            obj=model_version,
            detail={"review": review.pk, "comment": comment},
        )
    model_version.status = new_status
    model_version.decided_at = now
    return review
