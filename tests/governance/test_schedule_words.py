"""The catalog and the governance page give the same retraining schedule, in words; an
invalid cron line is an inline form error that keeps what was typed."""

from __future__ import annotations

import pytest

from governance.schedule_words import cron_in_words, validate_cron


def test_schedules_in_words():
    assert cron_in_words("0 2 1 * *") == "monthly, on the 1st at 02:00 UTC"
    assert cron_in_words("0 3 * * 1") == "weekly, on Mondays at 03:00 UTC"
    assert cron_in_words("30 4 * * *") == "daily at 04:30 UTC"
    assert cron_in_words("0 4 22 * *") == "monthly, on the 22nd at 04:00 UTC"
    assert cron_in_words("*/15 * * * *") == "cron */15 * * * * (UTC)"
    with pytest.raises(ValueError, match="five fields"):
        validate_cron("every day")
    with pytest.raises(ValueError, match="not a valid cron"):
        validate_cron("99 3 * * 1")


def _schedule_text(page: str) -> str:
    return page.split('data-field="schedule">', 1)[1].split("</", 1)[0]


@pytest.mark.django_db
def test_catalog_and_governance_agree(client, admin):
    from governance.schedules import set_schedule

    client.force_login(admin)
    catalog = "/catalog/finance/credit_risk/"
    governance = "/governance/problems/finance/credit_risk/"
    before = [_schedule_text(client.get(url).content.decode()) for url in (catalog, governance)]
    assert before[0] == before[1]
    assert "Default schedule: monthly, on the 1st at 02:00 UTC; not active" in before[0]
    set_schedule(user=admin, vertical="finance", problem="credit_risk", cron="0 3 * * 1")
    after = [_schedule_text(client.get(url).content.decode()) for url in (catalog, governance)]
    assert after[0].startswith("Retrains weekly, on Mondays at 03:00 UTC. ")
    assert after[1].startswith(after[0])


@pytest.mark.django_db
def test_an_invalid_cron_is_an_inline_error_keeping_the_input(client, admin):
    from governance.models import RetrainSchedule

    client.force_login(admin)
    response = client.post("/governance/problems/finance/credit_risk/schedule/",
                           {"cron": "0 25 * * 1", "enabled": "on"})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'value="0 25 * * 1"' in page
    field = page.split('name="cron"', 1)[1].split("</div>", 1)[0]
    assert "not a valid cron schedule" in field  # beside the field, not a banner
    assert not RetrainSchedule.objects.exists()
