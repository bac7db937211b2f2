"""Live pages served as htmx partials (a run's progress section, the dashboard's bars) and
the problem page's privacy–fairness–utility chart: its data, its table and its empty state."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from tests.web.factories import make_succeeded_run, make_version
from training.models import TrainingRun
from training.progress import curve_data
from training.tradeoff import largest_disparity

pytestmark = pytest.mark.django_db


def _json_script(html: str, element_id: str):
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>',
                      html, re.DOTALL)
    assert match, f"no json_script #{element_id}"
    return json.loads(match.group(1))


def _running_run(version, user, **fields) -> TrainingRun:
    defaults = {"status": TrainingRun.Status.RUNNING, "stage": "training", "epoch": 1,
                "total_epochs": 4, "loss": 0.6, "val_metric": 0.7, "epsilon_spent": 0.8,
                "history": [{"stage": "training", "epoch": 1, "loss": 0.6, "val_metric": 0.7,
                             "epsilon": 0.8}]}
    return TrainingRun.objects.create(
        organisation=version.dataset.organisation, dataset_version=version,
        vertical="finance", problem="credit_risk", created_by=user, **{**defaults, **fields})


# --- the run page's progress partial -------------------------------------------------


def test_progress_partial_polls_while_running_and_stops_with_a_refresh(
        client, analyst, validated_version):
    client.force_login(analyst)
    run = _running_run(validated_version, analyst)
    url = reverse("run_progress_partial", args=[run.pk])
    response = client.get(url, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "HX-Refresh" not in response
    assert html.lstrip().startswith("<section") and 'id="run-progress"' in html
    assert f'hx-get="{url}"' in html and 'hx-trigger="every 2s"' in html
    assert 'aria-valuenow="25"' in html and "width: 25%" in html
    (series,) = _json_script(html, "run-curve-data")["series"]
    assert series["epochs"] == [1] and series["epsilon"] == [0.8]

    run.epoch, run.history = 3, run.history + [
        {"stage": "training", "epoch": 2, "loss": 0.5, "val_metric": 0.72, "epsilon": 1.1},
        {"stage": "training", "epoch": 3, "loss": 0.45, "val_metric": 0.74, "epsilon": 1.3}]
    run.save()
    html = client.get(url).content.decode()
    assert 'aria-valuenow="75"' in html
    assert _json_script(html, "run-curve-data")["series"][0]["loss"] == [0.6, 0.5, 0.45]

    run.status = TrainingRun.Status.SUCCEEDED
    run.save()
    response = client.get(url)
    html = response.content.decode()
    assert response["HX-Refresh"] == "true"  # the page reloads once to show the results
    assert "hx-trigger" not in html and 'aria-valuenow="100"' in html
    assert "Cancel run" not in html


def test_dashboard_bars_refresh_until_the_run_ends(client, analyst, validated_version):
    client.force_login(analyst)
    run = _running_run(validated_version, analyst)
    bar_url = reverse("run_progress_partial", args=[run.pk]) + "?part=bar"
    html = client.get(reverse("dashboard")).content.decode()
    assert f'hx-get="{bar_url}"' in html and 'hx-trigger="every 2s"' in html

    fragment = client.get(bar_url).content.decode()
    assert fragment.count('role="progressbar"') == 1 and "Running" in fragment
    assert 'hx-trigger="every 2s"' in fragment and "<section" not in fragment
    run.status = TrainingRun.Status.FAILED
    run.save()
    response = client.get(bar_url)
    assert "HX-Refresh" not in response  # the dashboard stays; only the bar stops
    assert "hx-trigger" not in response.content.decode()
    assert "Failed" in response.content.decode()


def test_progress_partial_names_an_unknown_part(client, analyst, validated_version):
    client.force_login(analyst)
    run = _running_run(validated_version, analyst)
    response = client.get(reverse("run_progress_partial", args=[run.pk]) + "?part=nope")
    assert response.status_code == 400
    assert b"unknown part 'nope'" in response.content and b"section, bar" in response.content


def test_run_page_loads_htmx_and_the_chart_library_from_this_server(
        client, analyst, succeeded_run):
    client.force_login(analyst)
    html = client.get(reverse("run_detail", args=[succeeded_run.pk])).content.decode()
    for asset in ("/static/vendor/htmx.min.js", "/static/vendor/chart.umd.min.js",
                  "/static/js/charts.js"):
        assert f'src="{asset}"' in html, asset
    assert 'data-curve-source="run-curve-data"' in html
    assert _json_script(html, "run-curve-data")["series"][0]["epochs"] == [1, 2]
    assert "<noscript><svg" in html  # the server's SVG for readers without JavaScript
    assert "The curve as a table" in html


def test_curve_data_keeps_the_model_and_its_twin_apart():
    history = [
        {"stage": "training", "epoch": 1, "loss": 0.7, "val_metric": 0.6, "epsilon": 0.5},
        {"stage": "training", "epoch": 2, "loss": 0.6, "val_metric": None, "epsilon": 0.9},
        {"stage": "training_twin", "epoch": 1, "loss": 0.65, "val_metric": 0.66},
        {"stage": "preparing", "epoch": 0},
        {"epoch": 3, "loss": float("nan")},
    ]
    model, twin = curve_data(history)["series"]
    assert (model["label"], model["epochs"], model["val_metric"]) == (
        "model", [1, 2, 3], [0.6, None, None])
    assert model["loss"] == [0.7, 0.6, None]  # NaN is no number for JSON
    assert (twin["label"], twin["epochs"], twin["epsilon"]) == ("non-private twin", [1], [None])
    assert curve_data([]) == {"series": []}


# --- the problem page's privacy–fairness–utility chart --------------------------------


def _tradeoff_runs(version, user) -> list[TrainingRun]:
    """Three private runs (different epsilons, disparities and AUCs), one non-private."""
    runs = []
    for epsilon, low_rate, auc in ((1.0, 0.30, 0.70), (3.0, 0.20, 0.74), (8.0, 0.10, 0.78)):
        run = make_succeeded_run(version=version, user=user)
        run.privacy = {**run.privacy, "epsilon": epsilon}
        run.metrics = {**run.metrics, "roc_auc": auc}
        for attribute, part in run.fairness.items():
            gap = 0.4 - low_rate if attribute == "sex" else 0.05
            part["disparities"]["demographic_parity_difference"] = gap
            part["disparities"]["equalized_odds_difference"] = 0.01
        run.save()
        runs.append(run)
    open_run = make_succeeded_run(version=version, user=user)
    open_run.privacy = {"enabled": False}
    open_run.metrics = {**open_run.metrics, "roc_auc": 0.80}
    open_run.save()
    return runs + [open_run]


def test_problem_page_plots_every_run_of_the_organisation(
        client, reviewer, analyst, validated_version, other_org_run):
    runs = _tradeoff_runs(validated_version, analyst)
    TrainingRun.objects.create(  # failed runs have no result to plot
        organisation=validated_version.dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.FAILED,
        created_by=analyst)
    client.force_login(reviewer)
    html = client.get(reverse("problem", args=["finance", "credit_risk"])).content.decode()
    data = _json_script(html, "tradeoff-data")

    assert data["drawn"] == data["total"] == len(data["points"]) == 4
    assert (data["private"], data["nonprivate"]) == (3, 1)
    assert {p["run"] for p in data["points"]} == {r.pk for r in runs}
    assert other_org_run.pk not in {p["run"] for p in data["points"]}
    by_run = {p["run"]: p for p in data["points"]}
    first, _, third, open_run = (by_run[r.pk] for r in runs)
    assert (first["epsilon"], first["private"]) == (1.0, True)
    assert first["disparity"] == pytest.approx(0.1)  # 0.4 − 0.3: the largest gap
    assert first["where"] == "sex: demographic parity difference"
    assert third["disparity"] == pytest.approx(0.3)
    assert open_run["epsilon"] is None and not open_run["private"]
    assert data["infinity_x"] > 8.0
    # Utility (ROC AUC, higher is better) sets size: the best run is the largest point.
    assert open_run["radius"] == 14.0 and first["radius"] == 5.0
    assert data["metric_label"] == "ROC AUC (higher is better)"
    # The same runs as a table, for keyboards, screen readers and readers without JavaScript.
    table = html[html.index('class="tradeoff-table"'):]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 1 + 4
    assert "∞" in table and "no differential privacy" in table
    for run in runs:
        assert reverse("run_detail", args=[run.pk]) in table
    assert 'data-tradeoff-source="tradeoff-data"' in html
    assert 'src="/static/vendor/chart.umd.min.js"' in html


def test_problem_page_without_runs_says_how_to_get_one(client, analyst):
    client.force_login(analyst)
    html = client.get(reverse("problem", args=["finance", "credit_risk"])).content.decode()
    assert "No run of this problem has finished in your organisation yet." in html
    assert 'id="tradeoff-data"' not in html and "chart.umd.min.js" not in html
    assert reverse("dataset_upload", args=["finance", "credit_risk"]) in html


def test_runs_without_a_fairness_audit_are_listed_not_drawn(client, analyst):
    version = make_version(organisation=analyst.membership.organisation, user=analyst)
    run = make_succeeded_run(version=version, user=analyst)
    run.fairness = {}
    run.save()
    client.force_login(analyst)
    html = client.get(reverse("problem", args=["finance", "credit_risk"])).content.decode()
    assert "no fairness audit" in html and 'id="tradeoff-data"' not in html


def test_governance_problem_page_links_to_the_tradeoff(client, reviewer):
    client.force_login(reviewer)
    html = client.get(reverse("governance:problem", args=["finance", "credit_risk"])
                      ).content.decode()
    assert reverse("problem", args=["finance", "credit_risk"]) + "#tradeoff" in html


def test_largest_disparity_reads_differences_only():
    report = {
        "sex": {"disparities": {"demographic_parity_difference": 0.12,
                                "demographic_parity_ratio": 0.5,
                                "equalized_odds_difference": 0.2}},
        "store": {"disparities": {"mae_difference": float("inf"), "mae_ratio": 3.0,
                                  "worst_group": "A"}},
        "age": {"disparities": {"auc_difference": None}},
        "note": "not an attribute",
        "nationality": {"disparities": {"equalized_odds_difference": 0.2}},
    }
    # On a tie, the first attribute by name (jsonb keeps no key order).
    assert largest_disparity(report) == (0.2, "nationality: equalized odds difference")
    assert largest_disparity({}) == (None, "")
