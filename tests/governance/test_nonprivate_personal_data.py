"""Training without privacy on personal data needs an admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from governance.ledger import NonPrivateRunRefused, policy_for, set_dataset_policy
from training.models import TrainingRun
from training.services import start_run

pytestmark = pytest.mark.django_db


def test_analysts_and_reviewers_are_refused(validated_version, analyst, reviewer):
    for user in (analyst, reviewer):
        with pytest.raises(NonPrivateRunRefused):
            start_run(version=validated_version, user=user, privacy_enabled=False, enqueue=False)
    assert not TrainingRun.objects.exists()


def test_admins_may(validated_version, admin):
    run = start_run(version=validated_version, user=admin, privacy_enabled=False, enqueue=False)
    assert run.privacy_requested["enabled"] is False


def test_an_admins_permission_on_the_dataset_lets_analysts(validated_version, analyst, admin):
    with pytest.raises(PermissionDenied):
        set_dataset_policy(dataset=validated_version.dataset, user=analyst,
                           nonprivate_allowed=True)
    set_dataset_policy(dataset=validated_version.dataset, user=admin, nonprivate_allowed=True)
    assert start_run(version=validated_version, user=analyst, privacy_enabled=False,
                     enqueue=False)


def test_data_marked_not_personal_needs_no_permission(validated_version, analyst, admin):
    set_dataset_policy(dataset=validated_version.dataset, user=admin, personal_data=False)
    assert not policy_for(validated_version.dataset).personal_data
    assert start_run(version=validated_version, user=analyst, privacy_enabled=False,
                     enqueue=False)


def test_the_api_answers_403(validated_version, analyst, api_client):
    response = api_client(analyst).post(
        "/api/v1/runs/", {"dataset_version": validated_version.pk, "privacy": {"enabled": False}},
        format="json")
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]
