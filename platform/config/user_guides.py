"""User guides, one per vertical: ``docs/guides/<vertical>.md`` rendered as a page.

The Markdown is rendered with raw HTML switched off, so a guide cannot inject markup;
markdown-it also refuses ``javascript:`` links. Only files named after a registered
vertical are served: the URL never becomes a file path by itself.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.utils.safestring import SafeString, mark_safe

from catalog.guide import markdown_html
from verticals import registry

GUIDES_DIR = Path(settings.ROOT_DIR) / "docs" / "guides"


def guide_path(vertical_key: str) -> Path | None:
    """The guide of a registered vertical, when its file exists."""
    keys = {vertical.key for vertical in registry.verticals()}
    if vertical_key not in keys:
        return None
    path = GUIDES_DIR / f"{vertical_key}.md"
    return path if path.is_file() else None


@lru_cache(maxsize=32)
def _render(path: Path, mtime_ns: int) -> str:
    return markdown_html(path.read_text(encoding="utf-8"))


def render_markdown_file(path: Path) -> SafeString:
    """The file as HTML; cached until the file changes."""
    return mark_safe(_render(path, path.stat().st_mtime_ns))  # noqa: S308 - html disabled


def guide_index(request):
    guides = [{"vertical": vertical, "available": guide_path(vertical.key) is not None}
              for vertical in registry.verticals()]
    return render(request, "guides/index.html", {"guides": guides})


def guide_page(request, vertical: str):
    path = guide_path(vertical)
    if path is None:
        raise Http404("no guide for this vertical")
    return render(request, "guides/guide.html", {
        "vertical": registry.get_vertical(vertical), "body": render_markdown_file(path),
    })
