"""A problem's guide renders Markdown (markdown-it-py, raw HTML off): emphasis becomes <em>,
no literal asterisks, headings sit below the page's own, and markup cannot be injected."""

from __future__ import annotations

import pytest

from catalog.guide import render_guide


def test_emphasis_headings_and_escaping():
    html = render_guide("## Title\nRecorded *after* the decision, **bold**.\n\n<script>x</script>")
    assert "<h4>Title</h4>" in html
    assert "<em>after</em>" in html and "<strong>bold</strong>" in html and "*" not in html
    assert "<script>" not in html


@pytest.mark.django_db
def test_the_credit_guide_has_no_literal_asterisks(client, analyst):
    client.force_login(analyst)
    page = client.get("/catalog/finance/credit_risk/").content.decode()
    assert "<em>at the time of the decision</em>" in page
    assert "*at the time" not in page
