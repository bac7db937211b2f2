"""Every page renders for the persona it is for, and sends anonymous visitors to sign in."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from ingestion.models import DatasetVersion
from training.models import TrainingRun
from verticals.registry import get_problem

pytestmark = pytest.mark.django_db


def page_urls(run, version) -> list[str]:
    return [
        reverse("dashboard"),
        reverse("catalog"),
        reverse("problem", args=["finance", "credit_risk"]),
        reverse("dataset_list"),
        reverse("dataset_upload", args=["finance", "credit_risk"]),
        reverse("dataset_version", args=[version.pk]),
        reverse("run_list"),
        reverse("run_detail", args=[run.pk]),
        reverse("run_progress", args=[run.pk]),
        reverse("run_progress_partial", args=[run.pk]),
        reverse("run_progress_partial", args=[run.pk]) + "?part=bar",
        reverse("run_report", args=[run.pk]),
        reverse("review_detail", args=[run.model_version.pk]),
        reverse("audit_log"),
    ]


def test_anonymous_visitors_are_sent_to_sign_in(client, succeeded_run, validated_version):
    for url in page_urls(succeeded_run, validated_version) + [reverse("review_queue")]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_login_page_and_sign_in(client, analyst):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content and b"<label" in response.content
    analyst.set_password("a-long-password-1")
    analyst.save()
    response = client.post(reverse("login"), {"username": analyst.get_username(),
                                              "password": "a-long-password-1"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")


def test_logout_is_a_post(client, analyst):
    client.force_login(analyst)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


@pytest.mark.parametrize("persona", ["analyst", "reviewer", "admin"])
def test_every_page_renders_for_members(client, request, persona, succeeded_run,
                                        validated_version):
    client.force_login(request.getfixturevalue(persona))
    for url in page_urls(succeeded_run, validated_version):
        response = client.get(url)
        assert response.status_code == 200, url
    assert b"/static/css/tessera.css" in client.get(reverse("dashboard")).content


def test_no_external_assets(client, analyst, succeeded_run):
    client.force_login(analyst)
    html = client.get(reverse("run_report", args=[succeeded_run.pk])).content.decode()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html


def test_dashboard_shows_runs_in_progress_and_empty_states(client, analyst, validated_version):
    client.force_login(analyst)
    html = client.get(reverse("dashboard")).content.decode()
    assert "Nothing is training right now." in html
    run = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.RUNNING,
        stage="training", epoch=3, total_epochs=10, created_by=analyst,
    )
    html = client.get(reverse("dashboard")).content.decode()
    assert f"Run {run.pk}" in html and 'aria-valuenow="30"' in html


def test_dashboard_links_reviewers_to_the_queue(client, reviewer, succeeded_run):
    client.force_login(reviewer)
    html = client.get(reverse("dashboard")).content.decode()
    assert reverse("review_queue") in html
    assert 'class="big-number">1<' in html


def test_catalog_lists_problems_with_upload_links(client, analyst):
    client.force_login(analyst)
    html = client.get(reverse("catalog")).content.decode()
    assert "Credit default risk" in html
    assert reverse("dataset_upload", args=["finance", "credit_risk"]) in html
    guide = get_problem("finance", "credit_risk").guide
    problem_html = client.get(reverse("problem", args=["finance", "credit_risk"])).content
    assert b"Guide" in problem_html and (not guide or b"<p>" in problem_html)
    assert client.get(reverse("problem", args=["finance", "nope"])).status_code == 404


def test_run_page_shows_results_beside_baseline_and_twin(client, analyst, succeeded_run):
    client.force_login(analyst)
    html = client.get(reverse("run_detail", args=[succeeded_run.pk])).content.decode()
    for text in ("0.741", "0.730", "0.765", "Noise multiplier", "1.1234", "prv", "250",
                 reverse("run_report", args=[succeeded_run.pk]), "Training curve"):
        assert text in html, text
    assert 'hx-trigger="every 2s"' not in html  # a finished run does not poll
    assert "Cancel run" not in html


def test_running_run_polls_and_can_be_cancelled(client, analyst, validated_version):
    client.force_login(analyst)
    run = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.QUEUED,
        created_by=analyst,
    )
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in html and 'data-terminal="false"' in html
    assert f'hx-get="{reverse("run_progress_partial", args=[run.pk])}"' in html
    response = client.post(reverse("run_cancel", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert client.get(reverse("run_cancel", args=[run.pk])).status_code == 405


def test_failed_run_shows_its_error(client, analyst, validated_version):
    client.force_login(analyst)
    run = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.FAILED,
        error="ValueError: <bad> input", created_by=analyst,
    )
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "ValueError: &lt;bad&gt; input" in html


def test_progress_json(client, analyst, validated_version):
    client.force_login(analyst)
    run = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.RUNNING,
        stage="training", epoch=2, total_epochs=8, loss=0.5, val_metric=0.7,
        epsilon_spent=1.25, history=[{"epoch": 1, "loss": 0.6, "val_metric": 0.65},
                                     {"epoch": 2, "loss": 0.5, "val_metric": 0.7}],
        created_by=analyst,
    )
    response = client.get(reverse("run_progress", args=[run.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    assert data["status"] == "running" and data["terminal"] is False
    assert (data["epoch"], data["total_epochs"], data["percent"]) == (2, 8, 25)
    assert (data["loss"], data["val_metric"], data["epsilon_spent"]) == (0.5, 0.7, 1.25)
    assert data["stage"] == "training" and len(data["history"]) == 2
    (series,) = data["curve"]["series"]
    assert series["epochs"] == [1, 2] and series["loss"] == [0.6, 0.5]
    run.status = TrainingRun.Status.SUCCEEDED
    run.save()
    data = client.get(reverse("run_progress", args=[run.pk])).json()
    assert data["terminal"] is True and data["percent"] == 100


def test_report_page_draws_policy_lines(client, analyst, succeeded_run):
    client.force_login(analyst)
    html = client.get(reverse("run_report", args=[succeeded_run.pk])).content.decode()
    assert html.count('class="threshold"') >= 6  # 3 charts x 2 attributes
    assert "private vs non-private" in html
    assert "Minimum disparate impact ratio" in html and "≥ 0.8" in html
    assert "status-fail" in html and "Fail" in html


def test_group_names_from_files_are_escaped(client, analyst, validated_version):
    from tests.web.factories import make_succeeded_run

    run = make_succeeded_run(version=validated_version, user=analyst,
                             group_name="<script>alert(1)</script>")
    client.force_login(analyst)
    html = client.get(reverse("run_report", args=[run.pk])).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_audit_log_is_paginated_newest_first(client, analyst, org_a):
    from audits.services import log_action

    for i in range(30):
        log_action(organisation=org_a, actor=analyst, action=f"test.action{i}", obj=None)
    client.force_login(analyst)
    first = client.get(reverse("audit_log")).content.decode()
    assert "test.action29" in first and "test.action0<" not in first
    assert "page 1 of 2" in first
    second = client.get(reverse("audit_log") + "?page=2").content.decode()
    assert "test.action0<" in second


def _csv(problem, rows: int = 120) -> bytes:
    frame = problem.sample_data(rows, 0)
    return frame.to_csv(index=False, sep=";").encode()


def test_upload_map_and_validate_flow(client, analyst):
    problem = get_problem("finance", "credit_risk")
    client.force_login(analyst)
    upload = io.BytesIO(_csv(problem))
    upload.name = "applications.csv"
    response = client.post(reverse("dataset_upload", args=["finance", "credit_risk"]),
                           {"name": "Applications", "file": upload, "delimiter": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    version = DatasetVersion.objects.get(dataset__name="Applications")
    assert response["Location"] == reverse("dataset_mapping", args=[version.pk])
    html = client.get(response["Location"]).content.decode()
    columns = [str(c) for c in version.columns]
    assert all(f">{c}</label>" in html for c in columns)
    assert 'value="target" selected' in html  # pre-filled from the suggestion
    roles = {"target": "target", "id": "id"}
    mapping = problem.sample_mapping
    post = {"positive_label": ""}
    for i, name in enumerate(columns):
        if name == mapping.target:
            post[f"role_{i}"] = roles["target"]
        elif name == mapping.id:
            post[f"role_{i}"] = "id"
        elif name in mapping.sensitive:
            post[f"role_{i}"] = "sensitive"
        elif name in mapping.exclude:
            post[f"role_{i}"] = "exclude"
        else:
            post[f"role_{i}"] = "feature"
    response = client.post(reverse("dataset_mapping", args=[version.pk]), post)
    assert response["Location"] == reverse("dataset_version", args=[version.pk])
    version.refresh_from_db()
    assert version.status == DatasetVersion.Status.VALIDATED, version.errors
    html = client.get(response["Location"]).content.decode()
    assert version.sha256 in html and "Train a model" in html
    assert 'class="chart histogram"' in html or 'class="chart bar-chart"' in html
    assert "Groups of" in html and 'value="3.0"' in html  # epsilon default from the spec


def test_mapping_form_needs_one_target(client, analyst):
    problem = get_problem("finance", "credit_risk")
    client.force_login(analyst)
    upload = io.BytesIO(_csv(problem, 60))
    upload.name = "a.csv"
    client.post(reverse("dataset_upload", args=["finance", "credit_risk"]), {"file": upload})
    version = DatasetVersion.objects.latest("pk")
    post = {f"role_{i}": "feature" for i in range(len(version.columns))}
    response = client.post(reverse("dataset_mapping", args=[version.pk]), post)
    assert response.status_code == 200
    assert "Choose exactly one target column." in response.content.decode()


def test_unreadable_upload_shows_the_error_report(client, analyst):
    client.force_login(analyst)
    upload = io.BytesIO(b"\x00\x01\x02\xff" * 64)
    upload.name = "scan.pdf"
    response = client.post(reverse("dataset_upload", args=["finance", "credit_risk"]),
                           {"file": upload})
    version = DatasetVersion.objects.get(original_filename="scan.pdf")
    assert version.status == DatasetVersion.Status.REJECTED
    assert response["Location"] == reverse("dataset_version", args=[version.pk])
    html = client.get(response["Location"]).content.decode()
    assert "binary" in html and "Not trainable" in html and "Train a model" not in html


def test_upload_refused_by_the_service_shows_its_report(client, analyst, settings):
    settings.TESSERA_MAX_UPLOAD_BYTES = 10
    client.force_login(analyst)
    upload = io.BytesIO(b"a,b\n1,2\n3,4\n")
    upload.name = "big.csv"
    response = client.post(reverse("dataset_upload", args=["finance", "credit_risk"]),
                           {"file": upload})
    assert response.status_code == 400
    assert "The upload was rejected" in response.content.decode()
    assert not DatasetVersion.objects.exists()


def test_bad_dataset_parameter_is_not_found(client, analyst):
    client.force_login(analyst)
    url = reverse("dataset_upload", args=["finance", "credit_risk"])
    assert client.get(url + "?dataset=abc").status_code == 404
    assert client.get(url + "?dataset=999").status_code == 404


def test_rejected_version_shows_errors_with_columns_and_rows(client, analyst, org_a):
    from tests.web.factories import make_version

    version = make_version(organisation=org_a, user=analyst,
                           status=DatasetVersion.Status.REJECTED)
    version.errors = [{"code": "missing_target", "message": "target has missing values",
                       "column": "default", "rows": [3, 7], "severity": "error"}]
    version.save()
    client.force_login(analyst)
    html = client.get(reverse("dataset_version", args=[version.pk])).content.decode()
    assert "target has missing values" in html and "3, 7" in html and "default" in html
    assert "Train a model" not in html


def test_train_form_starts_a_run(client, analyst, validated_version):
    client.force_login(analyst)
    response = client.post(reverse("run_start", args=[validated_version.pk]),
                           {"privacy_enabled": "on", "target_epsilon": "2.5", "seed": "7",
                            "epochs": "2"})
    run = TrainingRun.objects.latest("pk")
    assert response["Location"] == reverse("run_detail", args=[run.pk])
    assert run.privacy_requested["target_epsilon"] == 2.5 and run.config["seed"] == 7
    assert run.status == TrainingRun.Status.QUEUED


@pytest.mark.slow
def test_real_run_renders(client, analyst, validated_version):
    from training import services

    run = services.start_run(version=validated_version, user=analyst, config={"epochs": 2},
                             enqueue=False)
    services.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    client.force_login(analyst)
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    baseline = run.result["baseline"]["metrics"]
    for text in (f"{run.metrics['roc_auc']:.3f}", f"{baseline['roc_auc']:.3f}",
                 f"{run.privacy['epsilon']:.3f}", f"{run.privacy['noise_multiplier']:.4f}",
                 run.privacy["accountant"]):
        assert text in html, text
    report = client.get(reverse("run_report", args=[run.pk])).content.decode()
    for attribute in run.fairness:
        assert f"Sensitive attribute: {attribute}" in report
    assert report.count('class="threshold"') >= 2 * len(run.fairness)
    assert "four_fifths_rule" not in report  # checks get readable names
    review = client.get(reverse("review_detail", args=[run.model_version.pk]))
    assert review.status_code == 200


def test_dashboard_shows_privacy_budget_left_per_dataset(client, analyst, validated_version):
    from verticals.registry import get_problem

    client.force_login(analyst)
    dataset = validated_version.dataset
    budget = get_problem("finance", "credit_risk").spec.dataset_budget_epsilon
    html = client.get(reverse("dashboard")).content.decode()
    assert f"&epsilon; {budget:.2f} of {budget:.2f}" in html
    assert reverse("governance:ledger", args=[dataset.pk]) in html
    # A queued private run reserves its target epsilon until it is charged.
    TrainingRun.objects.create(
        organisation=dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.QUEUED,
        privacy_requested={"enabled": True, "target_epsilon": 3.0}, created_by=analyst,
    )
    html = client.get(reverse("dashboard")).content.decode()
    assert f"&epsilon; {budget - 3.0:.2f} of {budget:.2f}" in html
