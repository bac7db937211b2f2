"""A small, safe rendering of a problem's Markdown guide: headings, lists, paragraphs,
``code`` and **bold**. Everything is escaped first, so a guide can never inject markup."""

from __future__ import annotations

import re
from html import escape

from django.utils.safestring import SafeString, mark_safe

_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
]


def _inline(text: str) -> str:
    text = escape(text)
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return text


def render_guide(markdown: str) -> SafeString:
    html: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            html.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            html.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for raw in (markdown or "").splitlines():
        line = raw.strip()
        heading = re.match(r"^(#{1,4})\s+(.*)$", line)
        if not line:
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)  # the page already has h1 and h2
            html.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif re.match(r"^[-*]\s+", line):
            if paragraph:
                flush()
            items.append(re.sub(r"^[-*]\s+", "", line))
        elif items and raw.startswith((" ", "\t")):
            items[-1] += " " + line
        else:
            if items:
                flush()
            paragraph.append(line)
    flush()
    return mark_safe("\n".join(html))  # noqa: S308 - built from escaped text only
