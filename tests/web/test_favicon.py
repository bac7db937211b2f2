"""Every page names a favicon served by the app (no 404 in the browser's console)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings


@pytest.mark.django_db
def test_pages_link_a_favicon_that_exists(client, analyst):
    client.force_login(analyst)
    page = client.get("/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    assert (Path(settings.ROOT_DIR) / "platform" / "static" / "favicon.svg").is_file()
