"""No CDN: every script and style a page loads is served by Tessera itself.

Templates and static files may not load a script, a style, a font or an image from another
host (``http://``, ``https://`` or protocol-relative ``//`` addresses); the libraries pages
use (htmx, Chart.js) come from the npm registry at set-up (`make assets`), pinned by
package-lock.json, and every vendored file a template names is one that set-up provides.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
STATIC_DIRS = [ROOT / "platform" / "static", *sorted((ROOT / "platform").glob("*/static"))]
VENDOR = ROOT / "platform" / "static" / "vendor"
OWN_STATIC = sorted(
    path for directory in STATIC_DIRS for path in directory.rglob("*")
    if path.suffix in {".js", ".css", ".html"} and VENDOR not in path.parents
)

EXTERNAL = r"""(?:https?:)?//"""
# Loading markup: <script src>, <link href>, <img src>, <iframe src>, srcset, CSS @import
# and url(), JavaScript's import and importScripts.
LOADERS = [
    re.compile(rf"""<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc\s*=\s*["']?\s*{EXTERNAL}""",
               re.IGNORECASE),
    re.compile(rf"""<link\b[^>]*\bhref\s*=\s*["']?\s*{EXTERNAL}""", re.IGNORECASE),
    re.compile(rf"""\bsrcset\s*=\s*["']?\s*{EXTERNAL}""", re.IGNORECASE),
    re.compile(rf"""@import\s+(?:url\()?\s*["']?\s*{EXTERNAL}""", re.IGNORECASE),
    re.compile(rf"""\burl\(\s*["']?\s*{EXTERNAL}""", re.IGNORECASE),
    re.compile(rf"""\b(?:import|importScripts)\s*\(?\s*["']{EXTERNAL}"""),
    re.compile(rf"""\bfrom\s+["']{EXTERNAL}"""),
]
# Our own scripts and styles name no other host at all.
ANY_ADDRESS = re.compile(r"""["'(]\s*(?:https?:)?//[a-z0-9]""", re.IGNORECASE)


def _loads_from_elsewhere(text: str) -> list[str]:
    return [match.group(0) for pattern in LOADERS for match in pattern.finditer(text)]


def test_the_guard_catches_cdn_references():
    for bad in ('<script src="https://cdn.jsdelivr.net/npm/htmx.org"></script>',
                "<script defer src=//unpkg.com/chart.js></script>",
                '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=x">',
                "@import url('https://fonts.googleapis.com/css2');",
                "body { background: url(//example.org/x.png) }",
                'import Chart from "https://esm.sh/chart.js";'):
        assert _loads_from_elsewhere(bad), bad
    for good in ('<script src="{% static \'vendor/htmx.min.js\' %}" defer></script>',
                 '<a href="https://example.org/docs">docs</a>',
                 '<svg xmlns="http://www.w3.org/2000/svg">'):
        assert not _loads_from_elsewhere(good), good


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_templates_load_nothing_from_another_host(template):
    assert not _loads_from_elsewhere(template.read_text())


def test_own_scripts_and_styles_name_no_other_host():
    assert OWN_STATIC, "no static files found"
    found = {str(p.relative_to(ROOT)): ANY_ADDRESS.findall(p.read_text()) + _loads_from_elsewhere(
        p.read_text()) for p in OWN_STATIC}
    assert not {path: hits for path, hits in found.items() if hits}


def test_vendored_assets_come_from_the_lock_file():
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert {"htmx.org", "chart.js"} <= set(package["dependencies"])
    for name in package["dependencies"]:
        locked = lock["packages"][f"node_modules/{name}"]
        assert locked["version"] and locked["integrity"].startswith("sha512-"), name
    vendor = package["tessera"]["vendor"]
    named = set()
    for template in TEMPLATES:
        named |= set(re.findall(r"""{%\s*static\s+['"]vendor/([^'"]+)['"]""",
                                template.read_text()))
    assert named, "no template loads a vendored asset"
    missing = named - set(vendor)
    assert not missing, f"templates load vendor files that `make assets` does not copy: {missing}"


def test_vendored_files_load_nothing_from_another_host():
    """What `make assets` copied (skips before it has run): no remote source map either."""
    files = sorted(p for p in VENDOR.glob("*.js")) if VENDOR.is_dir() else []
    if not files:
        pytest.skip(f"no vendored assets in {VENDOR.relative_to(ROOT)}: run `make assets`")
    for path in files:
        text = path.read_text(errors="replace")
        maps = re.findall(r"sourceMappingURL=(\S+)", text)
        assert all(not re.match(EXTERNAL, m) for m in maps), (path.name, maps)
        for target in maps:
            assert (path.parent / target).is_file(), f"{path.name} names a missing {target}"
