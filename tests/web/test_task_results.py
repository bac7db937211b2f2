"""Each task's results page and fairness report draw what its users expect.

Every problem's family is trained once per module on its sample data (two epochs; the text
encoder one epoch on few short texts) with ``run_training``; each test stores that real
result as ``training.services`` does and renders the pages with the web client. One test
goes through ``execute_run`` end to end.
"""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
from django.urls import reverse

from audits.models import FairnessReport
from ingestion.models import Dataset, DatasetVersion
from ml_core.families import get_family
from training.models import TrainingRun
from training.results import json_safe
from verticals.registry import get_problem

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# problem -> (rows, train overrides, private)
CASES = {
    ("manufacturing", "failure_prediction"): (600, {}, False),
    ("healthcare", "note_triage"): (120, {"epochs": 1, "max_length": 24}, False),
    ("retail", "demand_forecast"): (400, {"horizon": 4}, False),
    # Private at user level: a few hundred users for a private item vocabulary (issue 14).
    ("retail", "recommendation"): (6000, {}, True),
    ("education", "knowledge_tracing"): (400, {}, False),
    ("education", "next_exercise"): (400, {}, False),
    ("manufacturing", "remaining_useful_life"): (400, {}, False),
    ("manufacturing", "visual_inspection"): (60, {}, False),
}
_RESULTS: dict = {}


def trained(vertical: str, problem: str, tmp_path_factory):
    """The real TrainingResult of ``problem`` on its sample data (trained once)."""
    key = (vertical, problem)
    if key not in _RESULTS:
        from ml_core.pipeline import run_training

        rows, overrides, private = CASES[key]
        entry = get_problem(vertical, problem)
        spec = entry.spec
        _RESULTS[key] = run_training(
            frame=entry.sample_data(rows, 0), mapping=entry.sample_mapping, spec=spec,
            privacy=dataclasses.replace(spec.privacy, enabled=private, target_epsilon=8.0),
            train=dataclasses.replace(spec.train, **{"epochs": 2, **overrides}),
            artifact_dir=tmp_path_factory.mktemp(problem),
        )
    return _RESULTS[key]


def stored_run(*, user, organisation, vertical: str, problem: str, result) -> TrainingRun:
    """A succeeded run holding ``result`` exactly as training.services records it."""
    dataset = Dataset.objects.create(organisation=organisation, vertical=vertical,
                                     problem=problem, name=problem, created_by=user)
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, original_filename=f"{problem}.csv", sha256="0" * 64,
        size_bytes=1, status=DatasetVersion.Status.VALIDATED, uploaded_by=user,
        mapping=get_problem(vertical, problem).sample_mapping.to_dict(),
    )
    summary = json_safe(result.to_dict())
    rest = {k: v for k, v in summary.items()
            if k not in ("metrics", "privacy", "fairness", "history")}
    run = TrainingRun.objects.create(
        organisation=organisation, dataset_version=version, vertical=vertical, problem=problem,
        status=TrainingRun.Status.SUCCEEDED, metrics=summary["metrics"],
        privacy=summary["privacy"], fairness=summary["fairness"], result=rest,
        history=summary["history"], created_by=user,
    )
    FairnessReport.objects.create(
        run=run, passed=bool(result.fairness_passed), report=summary["fairness"],
        nonprivate_report=summary.get("nonprivate_fairness") or {},
        policy=json_safe(dataclasses.asdict(get_problem(vertical, problem).spec.fairness)),
    )
    return run


def pages(client, user, run) -> tuple[str, str]:
    client.force_login(user)
    page = client.get(reverse("run_detail", args=[run.pk]))
    report = client.get(reverse("run_report", args=[run.pk]))
    assert page.status_code == 200 and report.status_code == 200
    return page.content.decode(), report.content.decode()


@pytest.fixture
def render(client, analyst, org_a, tmp_path_factory):
    def make(vertical: str, problem: str):
        result = trained(vertical, problem, tmp_path_factory)
        # The page draws by the kind the problem's family declares.
        family = get_family(get_problem(vertical, problem).spec.model_family)
        assert result.charts["kind"] in family.chart_kinds
        run = stored_run(user=analyst, organisation=org_a, vertical=vertical, problem=problem,
                         result=result)
        return (result, *pages(client, analyst, run))

    return make


def _metrics_table(page: str) -> str:
    return page[page.index("Metrics on the held-out test split"):page.index("<h2>Privacy")]


def _common(page: str, result) -> None:
    table = _metrics_table(page)
    assert f"Baseline ({result.baseline['name']})" in table
    assert "How this model was trained and judged" in page
    assert result.notes[0].split(":")[0] in page
    assert 'class="card task-results"' in page


def test_binary_classification_shows_pr_curve_confusion_matrix_and_operational_audit(render):
    result, page, report = render("manufacturing", "failure_prediction")
    _common(page, result)
    assert "Precision-recall curve on the test split" in page
    assert 'class="confusion-matrix"' in page
    assert "PR AUC (higher is better)" in _metrics_table(page)
    # The decision audit, about the favourable outcome the problem declares.
    assert "Share alarmed for maintenance by Type" in report
    assert "Operational disparity" in report


def test_text_classification_shows_confusion_matrices_and_scores_by_group(render):
    result, page, report = render("healthcare", "note_triage")
    _common(page, result)
    assert "Confusion matrix of this model on the test split" in page
    assert "Confusion matrix of the baseline" in page
    assert "F1 per class" in page
    assert "Accuracy by sex" in report and "Macro F1 by sex" in report
    assert "Operational disparity" not in report


def test_forecast_shows_forecast_vs_actual_with_every_baseline(render):
    result, page, report = render("retail", "demand_forecast")
    _common(page, result)
    assert ": forecast vs actual" in page
    others = [n for n in result.baseline["baselines"] if n != result.baseline["name"]]
    for name in others:
        assert f"Baseline ({name})" in _metrics_table(page)
    assert "MASE (lower is better)" in _metrics_table(page)
    first_date = result.charts["forecast"][0]["dates"][0]
    assert first_date in page  # the date axis is labelled with dates
    assert "Mean absolute error by region" in report
    assert "Operational disparity" in report
    assert "Bias (mean predicted − true)" in report


def test_recommendation_shows_top_k_lists_exposure_and_ndcg_by_group(render):
    result, page, report = render("retail", "recommendation")
    _common(page, result)
    assert "Exposure by item popularity decile" in page
    assert "Top-k lists of test users" in page
    first = result.charts["top_k"][0]
    assert f'<th scope="row">{first["user"]}</th>' in page
    assert "NDCG@10 by" in report
    assert "private vs non-private model" in report  # the run was private: its twin shown


def test_knowledge_tracing_shows_mastery_curves_and_auc_by_student_group(render):
    result, page, report = render("education", "knowledge_tracing")
    _common(page, result)
    student = result.charts["mastery"][0]["student"]
    assert f"Student {student}: predicted mastery per skill" in page
    assert "AUC by sex" in report and "AUC by frl" in report


def test_next_exercise_shows_recommendations_with_the_zone(render):
    result, page, report = render("education", "next_exercise")
    _common(page, result)
    assert "Recommendations in the zone of proximal development" in page
    assert 'class="band" data-low="0.5" data-high="0.85"' in page
    assert "◆" in page  # the recommended skill is marked in text
    assert "Next skill per test student" in page
    assert "Share in the zone by" in report
    # Directions as the family declares them: counts carry none.
    table = _metrics_table(page)
    assert "Mean distance to 0.7 predicted success (lower is better)" in table
    assert "Share of skills recommended<" in table and "Share of skills recommended (" not in table


def test_rul_shows_predicted_vs_true_per_unit(render):
    result, page, report = render("manufacturing", "remaining_useful_life")
    _common(page, result)
    unit = result.charts["rul"][0]["unit"]
    assert f"Unit {unit}: remaining useful life" in page
    assert "NASA score (lower is better)" in _metrics_table(page)
    assert "Mean absolute error by line" in report
    assert "Operational disparity" in report


def test_image_classification_pages_render_with_the_common_sections(render):
    # The image report's own pictures (mistakes, saliency) are in the result's charts; the
    # pages draw the sections every task has.
    result, page, report = render("manufacturing", "visual_inspection")
    _common(page, result)
    assert "Image classification" in page
    assert "Macro F1" in _metrics_table(page)


def test_binary_report_keeps_its_columns(client, reviewer, pending_model):
    """The task-shaped report is an extension: the foundation's report reads as before."""
    client.force_login(reviewer)
    report = client.get(reverse("run_report", args=[pending_model.run.pk])).content.decode()
    header = re.search(r"<caption>Groups of foreign_worker</caption>\s*<thead>(.*?)</thead>",
                       report, re.S).group(1)
    # Plus the share given the favourable outcome the problem declares (credit risk: not
    # predicted to default), which the four-fifths rule compares.
    assert re.findall(r'<th scope="col">(.*?)</th>', header) == [
        "Group", "Rows", "Share predicted not to default", "Selection rate (predicted positive)",
        "TPR", "FPR", "Accuracy", "Judged"]


def test_a_forecast_run_through_execute_run_renders(client, admin):
    """Upload -> mapping -> execute_run -> pages, the path a real forecast takes."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from ingestion.services import confirm_mapping, upload_dataset
    from training.services import execute_run, start_run

    entry = get_problem("retail", "demand_forecast")
    buffer = io.StringIO()
    entry.sample_data(300, 1).to_csv(buffer, index=False)
    version = upload_dataset(user=admin, vertical="retail", problem="demand_forecast",
                             file=SimpleUploadedFile("sales.csv", buffer.getvalue().encode()))
    version = confirm_mapping(version=version, user=admin, mapping=entry.sample_mapping)
    assert version.status == "validated", version.errors
    run = start_run(version=version, user=admin, privacy_enabled=False,
                    config={"epochs": 1, "horizon": 4}, enqueue=False)
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    page, report = pages(client, admin, run)
    assert ": forecast vs actual" in page and "seasonal naive" in page.replace("_", " ")
    assert "Mean absolute error by region" in report
