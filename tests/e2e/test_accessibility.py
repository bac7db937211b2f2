"""axe-core (from npm, served by the app) on the reviewer's pages at laptop and tablet
widths: no serious or critical accessibility violation; a screenshot of each page."""

from __future__ import annotations

import pytest

from tests.web.factories import make_succeeded_run, make_version

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_reviewer_pages_have_no_serious_accessibility_violations(journey, org_a, analyst,
                                                                  reviewer):
    version = make_version(organisation=org_a, user=analyst, name="Applications 2025")
    model = make_succeeded_run(version=version, user=analyst).model_version
    journey.sign_in("rita", "pw-rita")
    pages = {"dashboard": "/", "review queue": "/reviews/",
             "review page": f"/reviews/models/{model.pk}/", "models": "/governance/models/",
             "model governance": f"/governance/models/{model.pk}/",
             "model card": f"/governance/models/{model.pk}/card/",
             "run": f"/runs/{model.run_id}/", "audit log": "/audit-log/"}
    found = {}
    for name, path in pages.items():
        journey.goto(path)
        journey.page.get_by_role("heading", level=1).first.wait_for()
        journey.check_widths(name, found)
    assert not found, found
    journey.assert_clean()
