"""Promote and Retire are separate forms whose fields have their own ids and labels; every
aria-describedby on the page points at an element that exists."""

from __future__ import annotations

import re
from collections import Counter

import pytest


@pytest.mark.django_db
def test_promote_and_retire_are_separate_with_unique_ids(make_model, approve, client, reviewer):
    model = approve(make_model())
    client.force_login(reviewer)
    page = client.get(f"/governance/models/{model.pk}/").content.decode()
    ids = Counter(re.findall(r'\sid="([^"]+)"', page))
    assert not [i for i, n in ids.items() if n > 1]
    assert 'for="promote_reason"' in page and 'for="retire_reason"' in page
    promote = page.split('id="promote-heading"', 1)[1].split("</form>", 1)[0]
    assert 'name="reason"' in promote and "Retire" not in promote
    for target in re.findall(r'aria-describedby="([^"]+)"', page):
        for one in target.split():
            assert f'id="{one}"' in page, one


@pytest.mark.django_db
def test_upload_form_describedby_ids_exist(client, analyst):
    client.force_login(analyst)
    page = client.get("/datasets/upload/finance/credit_risk/").content.decode()
    targets = [one for t in re.findall(r'aria-describedby="([^"]+)"', page) for one in t.split()]
    assert targets
    for one in targets:
        assert f'id="{one}"' in page, one
