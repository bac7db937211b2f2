"""The audit log reads as sentences with rounded numbers, never as Python dicts."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_entries_read_as_sentences(client, admin, org_a):
    from audits.services import log_action

    log_action(organisation=org_a, actor=None, action="ledger.charged", obj=None,
               detail={"dataset": 4, "epsilon": 2.91234567, "total_epsilon": 5.000000001,
                       "purpose": "training"})
    log_action(organisation=org_a, actor=admin, action="gates.changed", obj=None,
               detail={"before": {"max_epsilon": 3.0, "require_privacy": True},
                       "after": {"max_epsilon": 2.5, "require_privacy": True}})
    client.force_login(admin)
    page = client.get(reverse("audit_log")).content.decode()
    sentences = re.findall(r'data-field="sentence">([^<]*)<', page)
    assert any(s.startswith("The system charged the privacy ledger for")
               and "ε 2.912" in s and "total ε 5" in s and "5.000" not in s
               for s in sentences), sentences
    assert any(s.startswith(f"{admin.username} changed the gates of")
               and "maximum ε 3 → 2.5." in s for s in sentences), sentences
    assert "{" not in " ".join(sentences) and "2.91234567" not in page


@pytest.mark.django_db
def test_entries_name_their_object_as_people_say_it(admin, org_a):
    from audits.log_sentences import sentence
    from audits.services import log_action

    entry = log_action(organisation=org_a, actor=admin, action="organisation.changed",
                       obj=org_a)
    assert sentence(entry).endswith(f"organisation {org_a.pk}.")
    assert "accounts.organisation" not in sentence(entry)
