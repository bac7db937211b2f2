"""Browser fixtures: playwright driving Debian's Chromium against pytest-django's live
server, screenshots of every page into test-artifacts/screenshots/.

The browser is the system's (``apt-get install chromium``), never one downloaded by
``playwright install``. Without playwright or Chromium these tests skip, saying why;
with ``TESSERA_E2E_REQUIRED=1`` (set by .ci/run) they fail instead, so CI cannot pass
without having run them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import urlopen

import pytest

from tests.conftest import ROOT

CHROMIUM = Path(os.environ.get("TESSERA_CHROMIUM", "/usr/bin/chromium"))
# No GPU, no sandbox (root in CI), and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# A laptop screen; the reviewer journey also checks a tablet width.
VIEWPORT = {"width": 1366, "height": 900}
TABLET = {"width": 820, "height": 1180}
# Generous: CI has two cores, shared with a Celery worker that trains while pages load.
TIMEOUT_MS = 60_000


def unavailable_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make install adds it: dev extras)"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep the call phase's report on the item, so ``journey`` can screenshot a failure."""
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


@pytest.fixture(scope="module")
def browser():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("TESSERA_E2E_REQUIRED") == "1":
            pytest.fail(f"browser tests are required here, but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in this thread; Django would then refuse
    # the test's own ORM calls as "async". They are plain synchronous calls: allow them
    # for this module only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Journey:
    """One browser tab of a test: its page, screenshots in order, and what went wrong on
    the way (console errors, failed requests, requests leaving the live server)."""

    def __init__(self, *, page, base_url: str, shots_dir: Path):
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.shots_dir = shots_dir
        self.shots: list[Path] = []
        self.console_errors: list[str] = []
        self.failed_requests: list[str] = []
        self.outside_requests: list[str] = []

    def url(self, path: str) -> str:
        return self.base_url + path

    def goto(self, path: str):
        return self.page.goto(self.url(path))

    def shot(self, name: str) -> Path:
        """A full-page screenshot, numbered in the order the journey took them."""
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        path = self.shots_dir / f"{len(self.shots) + 1:02d}-{slug}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def sign_in(self, username: str, password: str) -> None:
        self.goto("/login/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.shot(f"sign-in-{username}")
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(self.url("/"))

    def accessibility_violations(self, *, impacts=("serious", "critical")) -> list[str]:
        """axe-core (vendored from npm, served by the app) on the current page: the rules
        broken at ``impacts``, each with the elements that break it."""
        self.page.add_script_tag(url=self.url("/static/vendor/axe.min.js"))
        violations = self.page.evaluate("async () => (await axe.run(document)).violations")
        return [f"{v['id']} ({v['impact']}): {v['help']} at "
                f"{[n['target'] for n in v['nodes']][:3]}"
                for v in violations if v.get("impact") in impacts]

    def check_widths(self, name: str, found: dict[str, list[str]]) -> None:
        """The current page at laptop and tablet widths: a screenshot of each, and axe-core's
        serious or critical violations added to ``found`` under "name (width)"."""
        for width, viewport in (("laptop", VIEWPORT), ("tablet", TABLET)):
            self.page.set_viewport_size(viewport)
            self.shot(f"{name}-{width}")
            problems = self.accessibility_violations()
            if problems:
                found[f"{name} ({width})"] = problems
        self.page.set_viewport_size(VIEWPORT)

    def assert_clean(self) -> None:
        assert not self.outside_requests, f"requests left the app: {self.outside_requests}"
        assert not self.failed_requests, f"requests failed: {self.failed_requests}"
        assert not self.console_errors, f"browser console errors: {self.console_errors}"


@pytest.fixture(scope="session")
def warm_live_server(live_server):
    """The first request imports URL confs, views and templates (10 s and more on a busy
    machine): pay it once here, not inside a page's timeout."""
    with urlopen(live_server.url + "/login/", timeout=300) as response:
        assert response.status == 200
    return live_server


@pytest.fixture
def journey(browser, warm_live_server, live_server, request):
    """A fresh browser context (no cookies) on the live server, for one test."""
    shots_dir = SCREENSHOTS / request.node.name
    shutil.rmtree(shots_dir, ignore_errors=True)
    shots_dir.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    trip = Journey(page=page, base_url=live_server.url, shots_dir=shots_dir)
    server = urlparse(live_server.url).netloc

    def guard(route):
        # Every asset is served by the app: anything else (a CDN) is recorded and refused.
        if urlparse(route.request.url).netloc not in (server, ""):
            trip.outside_requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    page.on("console", lambda msg: msg.type == "error" and trip.console_errors.append(msg.text))

    def failed(req):
        # A poll cut short by leaving the page is not a failure of the app.
        if "ERR_ABORTED" not in (req.failure or "") and urlparse(req.url).netloc == server:
            trip.failed_requests.append(f"{req.method} {req.url}: {req.failure}")

    page.on("requestfailed", failed)
    started = time.monotonic()
    try:
        yield trip
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            try:
                trip.shot("at-failure")
            except Exception:  # noqa: BLE001 - the page may be gone; the failure matters
                pass
        context.close()
        print(f"{request.node.name}: {len(trip.shots)} screenshots in {shots_dir} "
              f"({time.monotonic() - started:.1f} s)")
