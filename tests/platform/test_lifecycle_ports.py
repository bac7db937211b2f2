"""Training reaches the ledger, fairness reports and the audit log through ports the apps
above it fill at start-up (training.lifecycle, observability.audit_trail). They are filled
in every configured process, and privacy fails closed when they are not."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from ingestion.models import DatasetVersion
from observability import audit_trail
from training import lifecycle
from training.models import TrainingRun
from training.services import start_run

pytestmark = pytest.mark.django_db


def test_the_ports_are_filled_by_the_apps_above(validated_version):
    from audits.services import log_action, record_fairness_report
    from governance.ledger import charge_run, check_run_allowed

    assert lifecycle.ledger() == lifecycle.Ledger(check_run_allowed=check_run_allowed,
                                                  charge_run=charge_run)
    assert lifecycle.model_hooks().record_fairness is record_fairness_report
    assert audit_trail._writer is log_action


def test_no_run_starts_without_a_ledger(validated_version, analyst, monkeypatch):
    monkeypatch.setattr(lifecycle, "_ledger", None)
    with pytest.raises(ImproperlyConfigured, match="no privacy ledger"):
        start_run(version=validated_version, user=analyst, target_epsilon=1.0,
                  config={"epochs": 1}, enqueue=False)
    assert not TrainingRun.objects.exists()
    assert DatasetVersion.objects.filter(pk=validated_version.pk).exists()


def test_no_action_is_lost_without_the_audit_log(monkeypatch, org_a):
    monkeypatch.setattr(audit_trail, "_writer", None)
    with pytest.raises(audit_trail.NoAuditTrail):
        audit_trail.log_action(organisation=org_a, actor=None, action="x", obj=None)
