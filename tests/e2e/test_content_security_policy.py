"""The Content-Security-Policy in a real browser (issue 16): pages load with scripts from
files only and no violation in the console; the model card's Print button works without
its old inline ``onclick``; the API docs page renders under the same policy."""

from __future__ import annotations

import pytest

from tests.web.factories import make_succeeded_run, make_version

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_pages_run_under_the_policy_and_the_card_prints(journey, org_a, analyst, reviewer):
    version = make_version(organisation=org_a, user=analyst, name="Applications CSP")
    model = make_succeeded_run(version=version, user=analyst).model_version
    page = journey.page
    violations: list[str] = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text
            and violations.append(msg.text))
    # Stands in for the print dialog, which a headless browser does not show.
    page.add_init_script("window.print = () => { window.__printed = true; };")

    journey.sign_in("rita", "pw-rita")
    response = journey.goto(f"/governance/models/{model.pk}/card/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_role("button", name="Print").click()
    page.wait_for_function("window.__printed === true")
    journey.shot("card-printed")

    journey.goto(f"/governance/models/{model.pk}/")
    page.get_by_role("heading", level=1).wait_for()
    journey.goto("/api/v1/docs/")
    page.locator(".swagger-ui .info").wait_for()
    journey.shot("api-docs")
    assert violations == []
    journey.assert_clean()
