"""One source of truth: the run page, fairness report, review page, queue, Models list,
model card (page and JSON) and API show the stored run's figures (primary metric, epsilon,
fairness verdict) and no other; none shows the non-private twin's metric as the model's.
Runs of two families: the tabular credit model and a stored text-classification model."""

from __future__ import annotations

import re

import pytest

from audits.figures import EPSILON_DECIMALS
from governance.models import LedgerEntry
from tests.web.factories import make_succeeded_run, make_version
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


def _text_run(version, user) -> TrainingRun:
    """The same stored run, relabelled as the finance complaint-sentiment (text) family."""
    run = make_succeeded_run(version=version, user=user)
    TrainingRun.objects.filter(pk=run.pk).update(
        problem="complaint_sentiment", metrics={"macro_f1": 0.6123, "accuracy": 0.71},
        result={**run.result, "task_type": "text_classification",
                "baseline": {"name": "tfidf_logistic_regression",
                             "metrics": {"macro_f1": 0.5801}},
                "nonprivate_metrics": {"macro_f1": 0.6677}})
    run.model_version.__class__.objects.filter(pk=run.model_version.pk).update(
        problem="complaint_sentiment")
    run.refresh_from_db()
    return run


@pytest.mark.parametrize("family", ["tabular", "text"])
def test_every_page_shows_the_stored_figures(family, org_a, analyst, reviewer, client,
                                             api_client):
    version = make_version(organisation=org_a, user=analyst)
    run = make_succeeded_run(version=version, user=analyst) if family == "tabular" \
        else _text_run(version, analyst)
    model = run.model_version
    metric = "roc_auc" if family == "tabular" else "macro_f1"
    value, twin = run.metrics[metric], run.result["nonprivate_metrics"][metric]
    shown, twin_shown = f"{value:.3f}", f"{twin:.3f}"
    client.force_login(reviewer)
    pages = {name: client.get(url).content.decode() for name, url in {
        "run": f"/runs/{run.pk}/", "report": f"/reviews/runs/{run.pk}/report/",
        "review": f"/reviews/models/{model.pk}/", "queue": "/reviews/",
        "models": "/governance/models/", "card": f"/governance/models/{model.pk}/card/",
        "governance": f"/governance/models/{model.pk}/"}.items()}
    # The primary metric, wherever a page names it as the model's.
    for name in ("review", "queue", "models"):
        figures = re.findall(r'data-field="primary-metric">([\d.]+)', pages[name])
        assert figures and set(figures) == {shown}, (name, figures)
    assert shown in pages["run"]
    review = pages["review"].split('id="decide-heading"', 1)[1].split("</section>", 1)[0]
    assert f'data-field="twin">{twin_shown}' in review  # named as the twin, for the curator
    # Epsilon: the stored 2.93, at the one precision every page uses.
    assert "ε 2.93 of target 3.00" in review
    assert re.search(r'data-field="epsilon">2\.93\b', pages["queue"])
    assert re.search(r'data-field="epsilon">2\.93 of 3\.00', pages["models"])
    assert "2.93 of target 3.00" in pages["run"] and "(2.93, 1e-05)" in pages["card"]
    # The fairness verdict: the report failed (sex), its age attribute passed; every page
    # that states a verdict states these and no other.
    for name in ("queue", "models"):
        assert set(re.findall(r'data-verdict="(\w+)"', pages[name])) == {"failed"}, name
    for name in ("report", "review", "card"):
        codes = re.findall(r'data-verdict="(\w+)"', pages[name])
        assert codes[0] == "failed" and set(codes) == {"failed", "passed"}, (name, codes)
    card = client.get(f"/governance/models/{model.pk}/card.json").json()
    assert card["privacy"]["epsilon"] == 2.93 and card["fairness"]["verdict"] == "failed"
    detail = api_client(reviewer).get(f"/api/v1/models/{model.pk}/").json()
    assert detail["metrics"][metric] == value and detail["privacy"]["epsilon"] == 2.93
    assert detail["fairness_verdict"] == "failed"


# Every epsilon a page prints, found by what stands before it: "ε", "ε spent", "of target",
# a data-field holding it, or the ledger's cells.
EPSILON_SHOWN = re.compile(
    r'(?:ε[^<\d]{0,40}(?:</(?:dt|th)>\s*<(?:dd|td)[^>]*>)?\s*=?\s*(?:<span[^>]*>)?'
    r'|of target |of (?=\d+\.\d+</td>)'
    r'|data-field="(?:epsilon|epsilon_spent|spent|budget|remaining)">'
    r'|\((?=\d+\.\d+, [\d.e-]+\)-differential))(\d+\.\d+)')


def test_epsilon_reads_at_one_precision_on_every_page(org_a, analyst, reviewer, client,
                                                      api_client):
    """An epsilon of 2.934567 reads "2.93" on the run page, report, review page, queue,
    Models list and compare view, model card, governance page and ledger; the API keeps
    the raw float."""
    version = make_version(organisation=org_a, user=analyst)
    run = make_succeeded_run(version=version, user=analyst)
    raw = 2.934567
    TrainingRun.objects.filter(pk=run.pk).update(
        epsilon_spent=raw, privacy={**run.privacy, "epsilon": raw},
        history=[{**h, "epsilon": raw} for h in run.history])
    LedgerEntry.objects.create(dataset=version.dataset, run=run, epsilon=raw, delta=1e-5,
                               steps=250, total_epsilon_after=raw, run_status="succeeded",
                               basis=LedgerEntry.Basis.ACCOUNTED)
    other = make_succeeded_run(version=version, user=analyst)
    model = run.model_version
    client.force_login(reviewer)
    urls = {"run": f"/runs/{run.pk}/", "report": f"/reviews/runs/{run.pk}/report/",
            "review": f"/reviews/models/{model.pk}/", "queue": "/reviews/",
            "models": "/governance/models/", "card": f"/governance/models/{model.pk}/card/",
            "governance": f"/governance/models/{model.pk}/",
            "compare": f"/governance/models/compare/?pick={model.pk}"
                       f"&pick={other.model_version.pk}",
            "ledger": f"/governance/datasets/{version.dataset_id}/ledger/"}
    for name, url in urls.items():
        page = client.get(url)
        assert page.status_code == 200, (name, page.status_code)
        html = page.content.decode()
        shown = EPSILON_SHOWN.findall(html)
        if name != "report":  # the report states no epsilon
            assert shown, name
        wrong = [f for f in shown if len(f.split(".")[1]) != EPSILON_DECIMALS]
        assert not wrong, (name, wrong)
        assert "2.935" not in html and "2.9346" not in html, name
        if name not in ("report", "queue"):
            assert "2.93" in html, name
    detail = api_client(reviewer).get(f"/api/v1/models/{model.pk}/").json()
    assert detail["privacy"]["epsilon"] == raw
