"""The admin's governance journey in a real browser: open Models from the navigation,
compare two versions side by side, promote one (with an override reason, as its sign-off
gate blocks); and the empirical privacy audit asks before it spends any budget."""

from __future__ import annotations

import re

import pytest

from tests.web.factories import make_succeeded_run, make_version

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_admin_compares_two_versions_and_promotes_one(journey, org_a, analyst, admin):
    from governance.models import LedgerEntry
    from training.models import ModelVersion

    version = make_version(organisation=org_a, user=analyst, name="Applications 2025")
    first = make_succeeded_run(version=version, user=analyst).model_version
    second = make_succeeded_run(version=version, user=analyst, group_name="other").model_version
    page = journey.page
    journey.sign_in(admin.username, f"pw-{admin.username}")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="Models", level=1).wait_for()
    journey.shot("models")
    page.get_by_label(f"Compare model {first.pk}").check()
    page.get_by_label(f"Compare model {second.pk}").check()
    page.get_by_role("button", name="Compare the two ticked").click()
    page.get_by_role("heading", name=re.compile(r"^Model \d+ beside model \d+$")).wait_for()
    assert "Gate: fairness" in page.inner_text("table.compare")
    journey.shot("compare")

    page.get_by_role("link", name=f"Model {second.pk}", exact=True).click()
    page.get_by_role("heading", name="Promote to champion").wait_for()
    page.locator("#promote_reason").fill("Best of the two on the compare view.")
    page.locator("#promote_override_reason").fill("Sign-off recorded outside Tessera.")
    journey.shot("promote-form")
    page.get_by_role("button", name="Promote to champion").click()
    page.get_by_text(f"Model {second.pk} is now the champion.").wait_for()
    journey.shot("promoted")
    assert ModelVersion.objects.get(pk=second.pk).status == ModelVersion.Status.CHAMPION

    # The audit on the card: a confirmation page first, and cancelling spends nothing.
    journey.goto(f"/governance/models/{second.pk}/card/")
    page.get_by_role("button", name=re.compile("Run the empirical audit")).click()
    page.get_by_role("heading", name="Spend privacy budget on an empirical audit?").wait_for()
    assert "ε 3.00" in page.inner_text("main")
    journey.shot("audit-confirmation")
    page.get_by_role("link", name="Cancel").click()
    page.get_by_role("heading", name=re.compile("card", re.I)).first.wait_for()
    assert not LedgerEntry.objects.filter(purpose="privacy_audit").exists()
    journey.assert_clean()
