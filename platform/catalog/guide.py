"""Markdown for the guides, rendered by markdown-it-py with raw HTML switched off (a guide
can never inject markup, and markdown-it refuses ``javascript:`` links). One renderer for
a problem's guide on its catalog page and for the user guides (config.user_guides)."""

from __future__ import annotations

import re

from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")
_HEADING = re.compile(r"<(/?)h([1-6])>")


def markdown_html(markdown: str, *, heading_shift: int = 0) -> str:
    """HTML of ``markdown``; headings moved down ``heading_shift`` levels (at most h6) where
    the page already has its own h1 and h2."""
    html = _MARKDOWN.render(markdown or "")
    if heading_shift:
        html = _HEADING.sub(lambda m: f"<{m[1]}h{min(int(m[2]) + heading_shift, 6)}>", html)
    return html


def render_guide(markdown: str) -> SafeString:
    """A problem's guide on its catalog page (below the page's h1 and h2)."""
    return mark_safe(markdown_html(markdown, heading_shift=2))  # noqa: S308 - html disabled
