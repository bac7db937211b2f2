"""Governance history (the privacy-budget ledger, promotion events) refuses UPDATE and
DELETE in the database itself, as the audit log does: raw SQL cannot rewrite it."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from governance.models import LedgerEntry, PromotionEvent
from governance.registry import promote

pytestmark = pytest.mark.django_db


def _refused(table: str, pk: int, column: str, value) -> None:
    for statement, params in ((f"UPDATE {table} SET {column} = %s WHERE id = %s", [value, pk]),
                              (f"DELETE FROM {table} WHERE id = %s", [pk])):
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, params)


def test_the_ledger_refuses_changes_in_the_database(validated_version, run_private):
    run = run_private(validated_version, target_epsilon=1.0)
    entry = LedgerEntry.objects.get(run=run)
    spent = entry.epsilon

    _refused(LedgerEntry._meta.db_table, entry.pk, "epsilon", 0.0)

    assert LedgerEntry.objects.get(pk=entry.pk).epsilon == spent


def test_promotion_history_refuses_changes_in_the_database(make_model, approve, reviewer):
    model = approve(make_model())
    promote(model_version=model, user=reviewer, reason="first champion")
    event = PromotionEvent.objects.get(model_version=model)

    _refused(PromotionEvent._meta.db_table, event.pk, "reason", "forged")

    assert PromotionEvent.objects.get(pk=event.pk).reason == "first champion"
