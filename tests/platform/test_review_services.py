"""Human review of models, and the append-only audit log (in Python and in the database)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction

from audits.models import AppendOnlyError, AuditLogEntry, Review
from audits.services import log_action, review_model
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_reviewer_approves_with_a_comment(pending_model, reviewer):
    review = review_model(model_version=pending_model, user=reviewer, decision="approve",
                          comment="  Fairness checks pass; AUC above baseline.  ")

    pending_model.refresh_from_db()
    assert pending_model.status == ModelVersion.Status.APPROVED
    assert pending_model.decided_at is not None
    assert review.comment == "Fairness checks pass; AUC above baseline."
    assert review.reviewer == reviewer and review.decision == Review.Decision.APPROVE
    entry = AuditLogEntry.objects.get(action="model.approved")
    assert entry.actor == reviewer and entry.object_id == str(pending_model.pk)
    assert entry.detail["comment"] == review.comment


def test_admin_rejects(pending_model, admin):
    review_model(model_version=pending_model, user=admin, decision="reject",
                 comment="Selection-rate gap for foreign workers.")

    pending_model.refresh_from_db()
    assert pending_model.status == ModelVersion.Status.REJECTED
    assert AuditLogEntry.objects.filter(action="model.rejected", actor=admin).count() == 1


def test_analyst_cannot_review(pending_model, analyst):
    with pytest.raises(PermissionDenied):
        review_model(model_version=pending_model, user=analyst, decision="approve", comment="ok")
    pending_model.refresh_from_db()
    assert pending_model.status == ModelVersion.Status.PENDING_REVIEW
    assert not Review.objects.exists()


def test_reviewer_of_another_organisation_cannot_review(pending_model, other_reviewer):
    with pytest.raises(PermissionDenied):
        review_model(model_version=pending_model, user=other_reviewer, decision="approve",
                     comment="looks fine")


@pytest.mark.parametrize("comment", ["", "   ", None])
def test_comment_is_required(pending_model, reviewer, comment):
    with pytest.raises(ValueError, match="comment"):
        review_model(model_version=pending_model, user=reviewer, decision="approve",
                     comment=comment)
    assert not Review.objects.exists()


def test_unknown_decision(pending_model, reviewer):
    with pytest.raises(ValueError, match="decision"):
        review_model(model_version=pending_model, user=reviewer, decision="maybe", comment="hm")


def test_a_model_is_decided_once(pending_model, reviewer, admin):
    review_model(model_version=pending_model, user=reviewer, decision="reject", comment="gap")

    with pytest.raises(ValueError, match="already"):
        review_model(model_version=pending_model, user=admin, decision="approve", comment="ok")
    pending_model.refresh_from_db()
    assert pending_model.status == ModelVersion.Status.REJECTED
    assert Review.objects.count() == 1


def test_audit_log_refuses_changes_in_python(org_a, analyst):
    entry = log_action(organisation=org_a, actor=analyst, action="test.action", obj=org_a)

    entry.action = "forged"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditLogEntry.objects.filter(pk=entry.pk).update(action="forged")
    with pytest.raises(AppendOnlyError):
        AuditLogEntry.objects.all().delete()


def test_audit_log_refuses_changes_in_the_database(org_a, analyst):
    entry = log_action(organisation=org_a, actor=analyst, action="test.action", obj=org_a,
                       detail={"k": 1})
    table = AuditLogEntry._meta.db_table

    for statement in (f"UPDATE {table} SET action = 'forged' WHERE id = %s",
                      f"DELETE FROM {table} WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, [entry.pk])

    entry_after = AuditLogEntry.objects.get(pk=entry.pk)
    assert entry_after.action == "test.action"


def test_log_action_records_system_actions(org_a):
    entry = log_action(organisation=org_a, actor=None, action="run.succeeded", obj=None)
    assert entry.actor is None and entry.object_type == "" and entry.detail == {}
