"""The reviewer's day in a real browser: open the queue, read a model's fairness report,
reject it with a comment, approve another, and find both decisions in the audit log."""

from __future__ import annotations

import re

import pytest

from tests.web.factories import make_succeeded_run, make_version

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAST = {"Reject": "rejected", "Approve": "approved"}
TABLET = {"width": 820, "height": 1180}
REJECT_COMMENT = "Selection rate for female applicants is half the male rate: above policy."
APPROVE_COMMENT = "Gaps within policy for the judged groups; privacy budget as agreed."


def decide(journey, *, model_id: int, decision: str, comment: str) -> None:
    page = journey.page
    page.get_by_role("radio", name=decision).check()
    page.get_by_label("Comment").fill(comment)
    journey.shot(f"model-{model_id}-{decision.lower()}-form")
    page.get_by_role("button", name="Record decision").click()
    page.get_by_text("Decision recorded.").wait_for()
    decisions = page.locator("section.card", has=page.get_by_role("heading", name="Decisions"))
    assert comment in decisions.inner_text()
    journey.shot(f"model-{model_id}-{PAST[decision]}")


def test_reviewer_rejects_one_model_approves_another_and_sees_the_audit_log(
    journey, org_a, analyst, reviewer
):
    from audits.models import AuditLogEntry, Review
    from training.models import ModelVersion

    version = make_version(organisation=org_a, user=analyst, name="Applications 2025")
    to_reject = make_succeeded_run(version=version, user=analyst, group_name="female").model_version
    to_approve = make_succeeded_run(version=version, user=analyst, group_name="other").model_version
    page = journey.page

    journey.sign_in("rita", "pw-rita")
    page.get_by_role("heading", level=1).wait_for()
    journey.shot("dashboard")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reviews").click()
    page.get_by_role("heading", name="Models awaiting review").wait_for()
    queue = page.locator("table").first
    for model in (to_reject, to_approve):
        assert queue.get_by_role("link", name=f"Model {model.pk}", exact=True).is_visible()
    journey.shot("review-queue")
    page.set_viewport_size(TABLET)
    journey.shot("review-queue-tablet")
    page.set_viewport_size({"width": 1366, "height": 900})

    # Read the report, then reject.
    queue.get_by_role("link", name=f"Model {to_reject.pk}", exact=True).click()
    page.get_by_role("heading", name=re.compile(rf"^Model {to_reject.pk}\b")).wait_for()
    page.get_by_role("heading", name="Verdict").wait_for()
    page.get_by_role("table", name="Policy thresholds").wait_for()
    report = page.locator("section.attribute", has=page.get_by_role(
        "heading", name=re.compile("Sensitive attribute: sex")))
    assert "female" in report.inner_text()
    journey.shot(f"model-{to_reject.pk}-report")
    decide(journey, model_id=to_reject.pk, decision="Reject", comment=REJECT_COMMENT)

    # Back to the queue: only the other model waits.
    page.get_by_role("link", name="Reviews", exact=True).first.click()
    page.get_by_role("heading", name="Models awaiting review").wait_for()
    assert page.get_by_role("link", name=f"Model {to_reject.pk}", exact=True).count() == 1
    page.locator("table").first.get_by_role("link", name=f"Model {to_approve.pk}",
                                             exact=True).click()
    page.get_by_role("heading", name="Verdict").wait_for()
    journey.shot(f"model-{to_approve.pk}-report")
    decide(journey, model_id=to_approve.pk, decision="Approve", comment=APPROVE_COMMENT)

    page.get_by_role("link", name="Reviews", exact=True).first.click()
    page.get_by_text("No model is waiting for review.").wait_for()
    journey.shot("review-queue-empty")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_role("heading", name="Audit log", level=1).wait_for()
    log = page.locator("table.audit-log").inner_text()
    assert "model.rejected" in log and REJECT_COMMENT in log
    assert "model.approved" in log and APPROVE_COMMENT in log
    journey.shot("audit-log")

    to_reject.refresh_from_db()
    to_approve.refresh_from_db()
    assert to_reject.status == ModelVersion.Status.REJECTED
    assert to_approve.status == ModelVersion.Status.APPROVED
    assert list(Review.objects.order_by("pk").values_list("decision", "reviewer__username")) == [
        ("reject", "rita"), ("approve", "rita")]
    assert AuditLogEntry.objects.filter(action__in=["model.rejected", "model.approved"],
                                        actor=reviewer).count() == 2
    journey.assert_clean()
