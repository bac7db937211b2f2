"""Django's admin is no side door around governance (issue 16, finding 2): budgets, policies,
gates, the ledger, model versions, runs, datasets and the audit log are read-only there."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from audits.models import AuditLogEntry, FairnessReport, Review
from governance.models import (
    DatasetPolicy,
    GatePolicy,
    LedgerEntry,
    PromotionEvent,
    RetrainSchedule,
)
from ingestion.models import Dataset, DatasetVersion
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db

GOVERNANCE = [DatasetPolicy, GatePolicy, LedgerEntry, PromotionEvent, RetrainSchedule,
              AuditLogEntry, FairnessReport, Review, ModelVersion, TrainingRun, Dataset,
              DatasetVersion]


@pytest.fixture
def operator(django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.org", "pw-root")
    client = Client()
    client.force_login(root)
    return client


@pytest.mark.parametrize("model", GOVERNANCE, ids=lambda m: m.__name__)
def test_no_one_adds_changes_or_deletes_governance_records_in_the_admin(model, rf,
                                                                        django_user_model):
    request = rf.get("/admin/")
    request.user = django_user_model(is_superuser=True, is_staff=True, is_active=True)
    model_admin = admin.site._registry[model]
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


def test_a_superuser_cannot_raise_a_budget_or_turn_off_personal_data(operator,
                                                                     validated_version, admin):
    from governance.ledger import policy_for

    policy = policy_for(validated_version.dataset)
    before = (policy.budget_epsilon, policy.personal_data, policy.nonprivate_allowed)
    url = reverse("admin:governance_datasetpolicy_change", args=[policy.pk])
    assert operator.get(url).status_code == 200  # read
    response = operator.post(url, {"dataset": policy.dataset_id, "budget_epsilon": "1000000",
                                   "personal_data": "", "nonprivate_allowed": "on"})
    assert response.status_code == 403
    policy.refresh_from_db()
    assert (policy.budget_epsilon, policy.personal_data, policy.nonprivate_allowed) == before
    dataset_url = reverse("admin:ingestion_dataset_change", args=[validated_version.dataset_id])
    assert operator.post(dataset_url, {"name": "x", "organisation": 999}).status_code == 403
