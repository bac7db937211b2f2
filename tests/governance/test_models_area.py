"""The Models area (in the navigation): per problem, every version with its primary metric,
epsilon, fairness verdict, status and gates, sortable; two versions compared side by side.
The review page opens with what the reviewer decides on, the decision form right after."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def _rows(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-model="(\d+)">', page)]


def test_models_area_lists_sorts_and_links(make_model, client, reviewer):
    low = make_model(roc_auc=0.70, epsilon=2.5)
    high = make_model(roc_auc=0.80, epsilon=1.5, parity=0.3)
    client.force_login(reviewer)
    page = client.get("/governance/models/").content.decode()
    assert 'href="/governance/models/" aria-current="page">Models<' in page
    assert "finance / credit_risk" in page
    by_metric = client.get("/governance/models/?sort=metric&dir=desc").content.decode()
    assert _rows(by_metric) == [high.pk, low.pk]
    by_epsilon = client.get("/governance/models/?sort=epsilon&dir=desc").content.decode()
    assert _rows(by_epsilon) == [low.pk, high.pk]
    row = by_metric.split(f'<tr data-model="{high.pk}">', 1)[1].split("</tr>", 1)[0]
    assert 'data-field="primary-metric">0.800<' in row
    assert 'data-field="epsilon">1.50 of 3.00' in row
    assert 'data-verdict="failed"' in row and "blocked" in row


def test_two_versions_side_by_side(make_model, client, reviewer):
    a, b = make_model(roc_auc=0.70), make_model(roc_auc=0.80)
    client.force_login(reviewer)
    page = client.get(f"/governance/models/compare/?pick={a.pk}&pick={b.pk}").content.decode()
    row = page.split('<th scope="row">roc_auc</th>', 1)[1].split("</tr>", 1)[0]
    assert '<td data-side="a">0.700</td><td data-side="b">0.800</td>' in row
    assert "Gate: fairness" in page and "Privacy unit" in page
    one = client.get(f"/governance/models/compare/?pick={a.pk}")
    assert one.status_code == 302


def test_review_page_opens_with_the_decision(make_model, client, reviewer):
    model = make_model(roc_auc=0.74, baseline=0.72, epsilon=2.9)
    client.force_login(reviewer)
    page = client.get(f"/reviews/models/{model.pk}/").content.decode()
    summary = page.split('id="decide-heading"', 1)[1]
    assert summary.index("What you decide on") < summary.index("Your decision") < \
        summary.index("Verdict")
    decide = summary.split("</section>", 1)[0]
    assert 'data-field="primary-metric">0.740' in decide and 'data-field="baseline">0.720' in decide
    assert "ε 2.90 of target 3.00" in decide and "each row counts as one person" in decide
    assert "sex: passed" in decide
    assert "sign-off" in decide  # the failing gate, named


def test_review_queue_lists_metric_epsilon_and_verdict(make_model, client, reviewer):
    model = make_model(roc_auc=0.74, epsilon=2.9)
    client.force_login(reviewer)
    page = client.get("/reviews/").content.decode()
    row = page.split(f"Model {model.pk}</a>", 1)[1].split("</tr>", 1)[0]
    assert 'data-field="primary-metric">0.740' in row and 'data-field="epsilon">2.90' in row
    assert 'data-verdict="passed"' in row


def test_dataset_names_link_to_their_pages(make_model, client, reviewer):
    a, b = make_model(), make_model()
    client.force_login(reviewer)
    link = f'href="/datasets/versions/{a.run.dataset_version_id}/"'
    for url in ("/reviews/", "/governance/models/",
                f"/governance/models/compare/?a={a.pk}&b={b.pk}"):
        assert link in client.get(url).content.decode(), url
