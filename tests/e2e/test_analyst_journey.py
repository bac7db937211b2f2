"""The analyst's day in a real browser: sign in, pick Finance / Credit default risk,
upload a german.data-style file (no header), map the columns, start a private run, watch
its progress bar move while a real Celery worker trains it, open the fairness report."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.e2e.german_like import german_like_rows
from tests.support.worker import celery_worker
from training.progress import curve_data

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 240_000
# Long enough (a few seconds at least, on any machine) that the page's 2 s poll sees the
# run running before it ends: private training got fast enough that 600 rows x 3 epochs
# could go from queued to done between two polls.
EPOCHS = 10
ROWS = 6000

# Runs in the page from its first script on, across the reload that ends a run (htmx's
# HX-Refresh): every change of the progress section, as htmx swaps it in every 2 s, and of
# the training curve is reported to the test (window.recordProgress).
RECORD_PROGRESS = """
(() => {
  const read = () => {
    const section = document.getElementById("run-progress");
    if (!section) { return; }
    const field = (name) => section.querySelector('[data-field="' + name + '"]');
    const curve = document.getElementById("training-curve");
    window.recordProgress({
      status: (field("status_label") || {}).textContent || "",
      percent: (field("bar") || {getAttribute: () => null}).getAttribute("aria-valuenow"),
      stage: (field("stage") || {}).textContent || "",
      epoch: (field("epoch") || {}).textContent || "",
      curve_points: (curve && curve.dataset.points) || "",
    });
  };
  // htmx replaces the whole section on every poll: watch the page, not one element.
  document.addEventListener("DOMContentLoaded", () => {
    read();
    new MutationObserver(read).observe(document.body, {subtree: true, childList: true,
      characterData: true, attributes: true, attributeFilter: ["aria-valuenow", "data-points"]});
  });
})();
"""


def test_analyst_uploads_maps_trains_and_reads_the_report(journey, analyst, tmp_path):
    from training.models import TrainingRun

    page = journey.page
    observed: list[dict] = []
    page.expose_function("recordProgress", lambda state: observed.append(
        {key: (value or "").strip() for key, value in state.items()}))
    page.add_init_script(RECORD_PROGRESS)
    start_request_ids: list[str] = []
    page.on("response", lambda response: "/runs/new/" in response.url and
            start_request_ids.append(response.headers.get("x-request-id", "")))
    worker_log = tmp_path / "worker.log"

    # The worker starts first: its start-up overlaps the pages before the run.
    with celery_worker(log=worker_log):
        journey.sign_in("alice", "pw-alice")
        page.get_by_role("heading", level=1).wait_for()
        journey.shot("dashboard")

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Catalog").click()
        page.get_by_role("heading", name="Catalog", level=1).wait_for()
        journey.shot("catalog")

        finance = page.locator("section.card", has=page.get_by_role("heading", name="Finance"))
        finance.get_by_role("link", name="Credit default risk").click()
        page.get_by_role("heading", name="Credit default risk", level=1).wait_for()
        journey.shot("problem-credit-default-risk")

        # The guide is one click away from the problem page.
        page.get_by_role("link", name=re.compile("Finance user guide")).click()
        page.locator("article.user-guide h1").wait_for()
        assert "fairness" in page.locator("article.user-guide").inner_text().lower()
        journey.shot("guide-finance")
        page.go_back()

        page.get_by_role("link", name="Upload data").first.click()
        page.get_by_role("heading", name=re.compile("Upload data for")).wait_for()
        page.get_by_label("Name").fill("German credit (browser test)")
        page.get_by_label("File", exact=True).set_input_files(files=[{
            "name": "german.data", "mimeType": "text/plain",
            "buffer": german_like_rows(n_rows=ROWS, seed=7)}])
        page.get_by_text("Advanced reading options").click()
        page.get_by_label("File has no header row").check()
        journey.shot("upload-form")
        page.get_by_role("button", name="Upload").click()

        page.get_by_role("heading", name=re.compile("Map the columns")).wait_for()
        assert page.locator("table.mapping tbody tr").count() == 21
        page.get_by_label("column_21", exact=True).select_option("target")
        page.get_by_label("column_9", exact=True).select_option("sensitive")
        page.get_by_label("column_13", exact=True).select_option("sensitive")
        page.get_by_label("Positive label").fill("2")
        journey.shot("mapping")
        page.get_by_role("button", name="Confirm mapping and validate").click()

        page.get_by_text("Mapping confirmed: the data is valid for training.").wait_for()
        page.get_by_role("heading", name="Profile").wait_for()
        journey.shot("dataset-version-validated")

        training = page.locator("section.card", has=page.get_by_role("heading",
                                                                      name="Train a model"))
        assert training.get_by_label("Train with differential privacy").is_checked()
        training.get_by_label("Target epsilon").fill("3")
        training.get_by_label("Epochs").fill(str(EPOCHS))
        training.get_by_role("button", name="Start training").click()

        page.wait_for_url(re.compile(r"/runs/\d+/$"))
        run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
        journey.shot("run-queued")
        page.wait_for_function(
            "() => !['Queued'].includes(document.querySelector("
            "'[data-field=\"status_label\"]').textContent.trim())",
            timeout=RUN_TIMEOUT_MS)
        journey.shot("run-in-progress")
        page.get_by_role("heading", name="Metrics on the held-out test split").wait_for(
            timeout=RUN_TIMEOUT_MS)
        journey.shot("run-finished")

        run = TrainingRun.objects.get(pk=run_id)
        assert run.status == TrainingRun.Status.SUCCEEDED, run.error
        assert run.config.get("epochs") == EPOCHS
        assert 0 < run.privacy["epsilon"] <= 3.0 + 1e-6
        assert run.dataset_version.mapping["sensitive"] == ["column_9", "column_13"]

        # The bar moved while the run trained: the page showed the run running, and at
        # least two different progress values, the last one complete.
        print("progress seen by the page:", [(s["status"], s["percent"], s["stage"])
                                              for s in observed])
        percents = [int(float(s["percent"])) for s in observed if s["percent"] not in ("", None)]
        assert any(s["status"] == "Running" for s in observed), observed
        assert len(set(percents)) >= 2, observed
        assert percents[-1] == 100, observed
        assert page.get_by_text(re.compile(r"ε \(epsilon\) spent")).is_visible()
        # The Chart.js curve draws the stored history: loss, validation metric and epsilon
        # per epoch, for the model and its non-private twin.
        expected_points = sum(1 for series in curve_data(run.history)["series"]
                              for key in ("loss", "val_metric", "epsilon")
                              for value in series[key] if value is not None)
        assert expected_points >= 2 * EPOCHS
        page.wait_for_function("(n) => document.getElementById('training-curve')"
                               ".dataset.points === String(n)", arg=expected_points)

        # The problem page's trade-off chart has this run as its one point.
        journey.goto(f"/catalog/{run.vertical}/{run.problem}/")
        page.wait_for_function("() => document.getElementById('tradeoff-chart')"
                               ".dataset.points === '1'")
        journey.shot("problem-tradeoff")
        journey.goto(f"/runs/{run_id}/")

        page.get_by_role("link", name="Open the fairness report").click()
        page.get_by_role("heading", name=f"Fairness report · run {run_id}").wait_for()
        for attribute in ("column_9", "column_13"):
            page.get_by_role("heading", name=re.compile(f"Sensitive attribute: {attribute}")
                             ).wait_for()
        journey.shot("fairness-report")

        # The health endpoint sees the worker's heartbeat (no login needed).
        health = journey.goto("/healthz")
        body = json.loads(page.locator("body").inner_text())
        assert health.status == 200 and body["worker"] == "ok", body
        assert health.headers.get("x-request-id")
        journey.shot("healthz")
        # Give the worker's log a moment to flush, then check it carried the run id.
        time.sleep(0.5)

    # The worker's log lines for this run carry the run id, and the id of the web request
    # that started it.
    log = worker_log.read_text(errors="replace")
    started = [line for line in log.splitlines() if f"training run {run_id}: task started" in line]
    assert len(started) == 1, log[-3000:]
    assert f"run_id={run_id} " in started[0]
    assert start_request_ids and start_request_ids[0], "no X-Request-ID on the start request"
    assert f"request_id={start_request_ids[0]} " in started[0], started[0]
    journey.assert_clean()
