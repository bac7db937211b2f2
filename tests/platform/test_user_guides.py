"""User guides per vertical (docs/guides/*.md), served at /catalog/guides/<vertical>/."""

from __future__ import annotations

import pytest

from config.user_guides import GUIDES_DIR, render_markdown_file
from verticals import registry

SECTIONS = ("What to upload", "Reading the metrics", "privacy", "fairness")


def vertical_keys() -> list[str]:
    return [vertical.key for vertical in registry.verticals()]


@pytest.mark.parametrize("key", vertical_keys())
def test_every_vertical_has_a_guide_with_the_sections_users_need(key):
    text = (GUIDES_DIR / f"{key}.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    for section in SECTIONS:
        assert any(section.lower() in h.lower() for h in headings), (key, section, headings)


@pytest.mark.django_db
def test_guide_pages_render_and_are_linked_from_problem_pages(client, analyst):
    client.force_login(analyst)
    index = client.get("/catalog/guides/")
    assert index.status_code == 200
    for vertical in registry.verticals():
        page = client.get(f"/catalog/guides/{vertical.key}/")
        assert page.status_code == 200, vertical.key
        html = page.content.decode()
        assert "<h2>What to upload</h2>" in html and "<table>" in html
        assert f'href="/catalog/guides/{vertical.key}/"' in index.content.decode()
        for problem in vertical.problems:
            problem_page = client.get(f"/catalog/{vertical.key}/{problem.key}/")
            assert f'href="/catalog/guides/{vertical.key}/"' in problem_page.content.decode()
    catalog = client.get("/catalog/").content.decode()
    assert all(f'href="/catalog/guides/{key}/"' in catalog for key in vertical_keys())


@pytest.mark.django_db
def test_unknown_guides_are_404_and_guides_need_a_login(client, analyst):
    assert client.get("/catalog/guides/finance/").status_code == 302  # to the login page
    client.force_login(analyst)
    assert client.get("/catalog/guides/astrology/").status_code == 404
    assert client.get("/catalog/guides/..%2Fsettings/").status_code == 404


def test_markdown_cannot_inject_markup(tmp_path):
    path = tmp_path / "evil.md"
    path.write_text('# Title\n\n<script>alert(1)</script>\n\n[link](javascript:alert(1))\n'
                    '\n| a |\n|---|\n| <b>x</b> |\n', encoding="utf-8")
    html = str(render_markdown_file(path))
    assert "<script>" not in html and "<b>" not in html
    assert 'href="javascript:' not in html
    assert "&lt;script&gt;" in html and "<h1>Title</h1>" in html and "<table>" in html
