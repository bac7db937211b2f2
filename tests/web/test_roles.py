"""Analysts read fairness reports; only reviewers and admins decide on models."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audits.models import AuditLogEntry, Review
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_analyst_sees_the_report_but_no_review_form(client, analyst, succeeded_run):
    client.force_login(analyst)
    url = reverse("review_detail", args=[succeeded_run.model_version.pk])
    response = client.get(url)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Sensitive attribute: sex" in html
    assert 'name="decision"' not in html and 'name="comment"' not in html
    assert "Only reviewers and admins" in html


def test_analyst_post_approve_is_forbidden(client, analyst, succeeded_run):
    client.force_login(analyst)
    model_version = succeeded_run.model_version
    response = client.post(reverse("review_detail", args=[model_version.pk]),
                           {"decision": "approve", "comment": "looks fine"})
    assert response.status_code == 403
    assert b"Not allowed" in response.content
    model_version.refresh_from_db()
    assert model_version.status == ModelVersion.Status.PENDING_REVIEW
    assert not Review.objects.exists()


def test_analyst_has_no_review_queue(client, analyst):
    client.force_login(analyst)
    assert client.get(reverse("review_queue")).status_code == 403
    assert reverse("review_queue") not in client.get(reverse("dashboard")).content.decode()


@pytest.mark.parametrize("persona", ["reviewer", "admin"])
def test_reviewers_see_the_queue_with_verdicts(client, request, persona, succeeded_run):
    client.force_login(request.getfixturevalue(persona))
    html = client.get(reverse("review_queue")).content.decode()
    assert reverse("review_detail", args=[succeeded_run.model_version.pk]) in html
    assert "status-fail" in html  # the stored report failed


@pytest.mark.parametrize("persona", ["reviewer", "admin"])
def test_reviewer_approves_with_a_comment(client, request, persona, succeeded_run):
    user = request.getfixturevalue(persona)
    client.force_login(user)
    model_version = succeeded_run.model_version
    url = reverse("review_detail", args=[model_version.pk])
    assert 'name="comment"' in client.get(url).content.decode()
    response = client.post(url, {"decision": "approve", "comment": "Disparity explained."})
    assert response.status_code == 302
    model_version.refresh_from_db()
    assert model_version.status == ModelVersion.Status.APPROVED
    review = Review.objects.get()
    assert (review.reviewer, review.comment) == (user, "Disparity explained.")
    assert AuditLogEntry.objects.filter(action="model.approved").exists()
    html = client.get(url).content.decode()
    assert "Disparity explained." in html and 'name="comment"' not in html


def test_review_needs_a_comment(client, reviewer, succeeded_run):
    client.force_login(reviewer)
    url = reverse("review_detail", args=[succeeded_run.model_version.pk])
    response = client.post(url, {"decision": "reject", "comment": "   "})
    assert response.status_code == 200
    assert "required" in response.content.decode()
    succeeded_run.model_version.refresh_from_db()
    assert succeeded_run.model_version.status == ModelVersion.Status.PENDING_REVIEW


def test_a_decided_model_cannot_be_decided_again(client, reviewer, admin, succeeded_run):
    url = reverse("review_detail", args=[succeeded_run.model_version.pk])
    client.force_login(reviewer)
    client.post(url, {"decision": "reject", "comment": "no"})
    client.force_login(admin)
    response = client.post(url, {"decision": "approve", "comment": "yes"})
    assert response.status_code == 302
    assert Review.objects.count() == 1
