"""Charts and live updates in a real browser, fast (no worker: the test moves the run itself):
htmx swaps the progress section in as the run advances and the bar and the Chart.js curve
follow; the dashboard's bar follows too; the run's end reloads the page with its results;
the problem page draws one point per run on the privacy–fairness–utility chart. Every page
is saved as a screenshot, at a laptop's and a tablet's width."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.web.factories import make_succeeded_run, make_version

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TABLET = {"width": 820, "height": 1180}
LAPTOP = {"width": 1366, "height": 900}
# Polling every 2 s: a change shows within a few polls even on a loaded machine.
CHANGE_MS = 30_000


def _advance(run, *, epoch: int) -> None:
    """What the worker's progress sink writes at the end of an epoch."""
    run.epoch = epoch
    run.loss, run.val_metric, run.epsilon_spent = 0.7 - 0.05 * epoch, 0.6 + 0.03 * epoch, \
        0.9 * epoch
    run.history = [{"stage": "training", "epoch": e, "loss": 0.7 - 0.05 * e,
                    "val_metric": 0.6 + 0.03 * e, "epsilon": 0.9 * e}
                   for e in range(1, epoch + 1)]
    run.save(update_fields=["epoch", "loss", "val_metric", "epsilon_spent", "history"])


def _wait_attribute(page, selector: str, attribute: str, value: str) -> None:
    page.wait_for_function(
        "([sel, attr, value]) => { const el = document.querySelector(sel);"
        " return el !== null && el.getAttribute(attr) === value; }",
        arg=[selector, attribute, value], timeout=CHANGE_MS)


def test_htmx_moves_the_bar_and_the_curve_then_the_page_shows_the_results(
        journey, org_a, analyst):
    from training.models import TrainingRun

    version = make_version(organisation=org_a, user=analyst, name="Live applications")
    run = make_succeeded_run(version=version, user=analyst)
    finished = {f: getattr(run, f) for f in ("status", "stage", "epoch", "total_epochs",
                                             "history", "loss", "val_metric", "epsilon_spent")}
    run.status, run.stage, run.total_epochs = TrainingRun.Status.RUNNING, "training", 4
    run.save()
    _advance(run, epoch=1)
    page = journey.page

    journey.sign_in("alice", "pw-alice")
    # The dashboard's bar of the running run refreshes itself.
    bar = f'.run-progress[data-run="{run.pk}"] [role="progressbar"]'
    page.locator(bar).wait_for()
    assert page.locator(bar).get_attribute("aria-valuenow") == "25"
    journey.shot("dashboard-run-in-progress")
    _advance(run, epoch=2)
    _wait_attribute(page, bar, "aria-valuenow", "50")
    journey.shot("dashboard-bar-moved")

    journey.goto(reverse("run_detail", args=[run.pk]))
    page.get_by_role("heading", name="Training curve").wait_for()
    section_bar = '#run-progress [role="progressbar"]'
    assert page.locator(section_bar).get_attribute("aria-valuenow") == "50"
    # Loss, validation metric and epsilon for 2 epochs.
    _wait_attribute(page, "#training-curve", "data-points", "6")
    journey.shot("run-in-progress")
    _advance(run, epoch=3)
    _wait_attribute(page, section_bar, "aria-valuenow", "75")
    _wait_attribute(page, "#training-curve", "data-points", "9")
    assert page.locator('[data-field="epoch"]').inner_text() == "3"
    journey.shot("run-curve-moved")
    page.set_viewport_size(TABLET)
    journey.shot("run-in-progress-tablet")
    page.set_viewport_size(LAPTOP)

    # The run ends: the partial says HX-Refresh, the page reloads with the results.
    for field, value in finished.items():
        setattr(run, field, value)
    run.save()
    page.get_by_role("heading", name="Metrics on the held-out test split").wait_for(
        timeout=CHANGE_MS)
    assert page.locator(section_bar).get_attribute("aria-valuenow") == "100"
    assert page.locator("#run-progress").get_attribute("hx-trigger") is None  # polling stopped
    _wait_attribute(page, "#training-curve", "data-points", "6")  # the stored 2-epoch history
    journey.shot("run-finished")
    journey.assert_clean()


def test_reviewer_sees_every_run_on_the_privacy_fairness_utility_chart(
        journey, org_a, org_b, analyst, other_analyst, reviewer):
    version = make_version(organisation=org_a, user=analyst, name="Applications 2025")
    runs = []
    for epsilon, auc in ((0.5, 0.69), (2.0, 0.73), (6.0, 0.76)):
        run = make_succeeded_run(version=version, user=analyst)
        run.privacy = {**run.privacy, "epsilon": epsilon}
        run.metrics = {**run.metrics, "roc_auc": auc}
        run.save()
        runs.append(run)
    open_run = make_succeeded_run(version=version, user=analyst)
    open_run.privacy = {"enabled": False}
    open_run.save()
    runs.append(open_run)
    theirs = make_version(organisation=org_b, user=other_analyst, name="Not ours")
    make_succeeded_run(version=theirs, user=other_analyst)
    page = journey.page

    journey.sign_in("rita", "pw-rita")
    journey.goto(reverse("governance:problem", args=["finance", "credit_risk"]))
    journey.shot("governance-problem")
    page.get_by_role("link", name="Privacy, fairness and utility of every run").click()
    chart = page.locator("canvas#tradeoff-chart")
    chart.wait_for()
    page.wait_for_function("() => document.querySelector('#tradeoff-chart').dataset.points")
    # One point per run of this organisation: three private, one at ∞; none of org_b's.
    assert chart.get_attribute("data-points") == str(len(runs))
    drawn = page.evaluate("""() => {
        const chart = Chart.getChart(document.getElementById('tradeoff-chart'));
        return chart.data.datasets.map(d => d.data.map(p => [p.p.run, p.x, p.p.private]));
    }""")
    private, nonprivate = drawn
    assert sorted(r for r, _, _ in private) == sorted(r.pk for r in runs[:3])
    assert [r for r, _, _ in nonprivate] == [open_run.pk]
    assert nonprivate[0][1] > max(x for _, x, _ in private)  # apart, right of every ε
    rows = page.locator("table.tradeoff-table tbody tr")
    assert rows.count() == len(runs)
    journey.shot("problem-tradeoff")
    page.set_viewport_size(TABLET)
    journey.shot("problem-tradeoff-tablet")
    page.set_viewport_size(LAPTOP)

    # A point opens its run.
    # Settle the chart after the viewport change first (its resize is debounced and
    # animated): a point read mid-animation is not where the click lands.
    x, y = page.evaluate("""() => {
        const chart = Chart.getChart(document.getElementById('tradeoff-chart'));
        chart.stop(); chart.resize(); chart.update('none');
        const el = chart.getDatasetMeta(1).data[0];
        return [el.x, el.y];
    }""")
    box = chart.bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_url(re.compile(rf"/runs/{open_run.pk}/$"))
    page.get_by_role("heading", name="Metrics on the held-out test split").wait_for()
    journey.shot("run-without-privacy")

    # The other pages a reviewer reads, each saved.
    for name, url in (("dataset-version", reverse("dataset_version", args=[version.pk])),
                      ("fairness-report", reverse("run_report", args=[runs[0].pk])),
                      ("runs", reverse("run_list")),
                      ("ledger", reverse("governance:ledger", args=[version.dataset.pk]))):
        journey.goto(url)
        page.get_by_role("heading", level=1).wait_for()
        journey.shot(name)
    journey.assert_clean()
