"""``manage.py pipeline`` for every registered problem: each problem's sample data written to
CSV, mapped with ``--column ROLE=COL`` (the rest from the suggested mapping), trained
in-process for a few epochs, and the JSON checked for the task's metrics beside its
baseline, the split, the notes and the task type.

Kept fast: small tables, two or three epochs, one private run (recommendation: embeddings
under DP-SGD) and the others non-private.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from ingestion.models import CompanionFile, DatasetVersion
from training.models import TrainingRun
from verticals.registry import all_problems, get_problem

pytestmark = pytest.mark.django_db


def pipeline(*args) -> tuple[int, dict]:
    out = io.StringIO()
    code = 0
    try:
        call_command("pipeline", *map(str, args), stdout=out)
    except SystemExit as exit_:
        code = exit_.code
    return code, json.loads(out.getvalue())


def sample_csv(tmp_path: Path, vertical: str, problem: str, n_rows: int, *, drop=()) -> Path:
    frame = get_problem(vertical, problem).sample_data(n_rows, 0)
    path = tmp_path / f"{problem}.csv"
    frame.drop(columns=list(drop)).to_csv(path, index=False)
    return path


# problem -> (rows, extra command-line arguments). Roles given explicitly where a user
# would have to (their names differ from the hints), the rest left to the suggestion.
CASES = {
    ("finance", "credit_risk"): (300, ["--column", "target=default"]),
    # The text encoder fine-tunes a transformer layer: the fewest rows and tokens that run.
    ("finance", "complaint_sentiment"): (120, ["--set", "max_length=24"]),
    ("healthcare", "readmission_risk"): (300, ["--positive-label", "yes"]),
    ("healthcare", "note_triage"): (120, ["--column", "text=note", "--column", "label=urgency",
                                          "--set", "max_length=24"]),
    ("retail", "demand_forecast"): (0, ["--column", "series=store", "--column", "series=item",
                                        "--column", "time=week", "--horizon", "4"]),
    ("retail", "recommendation"): (0, ["--column", "user=user_id",
                                       "--column", "item=product_id"]),
    ("education", "knowledge_tracing"): (0, ["--column", "student=student_id"]),
    ("education", "next_exercise"): (0, []),
    ("education", "outcome_risk"): (300, ["--exclude", "G1", "--exclude", "G2"]),
    ("manufacturing", "failure_prediction"): (600, []),
    ("manufacturing", "remaining_useful_life"): (0, ["--column", "unit=unit",
                                                     "--column", "cycle=cycle"]),
}
PRIVATE = {("retail", "recommendation")}
EPOCHS = 2
FAMILY_EPOCHS = {"text_encoder": 1}


def test_every_registered_problem_has_a_case() -> None:
    assert {(v.key, p.key) for v, p in all_problems()} <= set(CASES)


def _case_params():
    registered = {(v.key, p.key) for v, p in all_problems()}
    return [pytest.param(v, p, id=f"{v}-{p}", marks=pytest.mark.slow)
            for v, p in CASES if (v, p) in registered]


@pytest.mark.parametrize(("vertical", "problem"), _case_params())
def test_pipeline_trains_every_problem(vertical, problem, tmp_path, admin):
    """Non-private runs on personal data need an admin (governance): they run as one."""
    rows, extra = CASES[(vertical, problem)]
    spec = get_problem(vertical, problem).spec
    path = sample_csv(tmp_path, vertical, problem, rows or 400)
    predictions = tmp_path / "out" / "predictions.csv"
    privacy = ["--epsilon", "8"] if (vertical, problem) in PRIVATE else ["--no-privacy"]

    code, body = pipeline(path, "--vertical", vertical, "--problem", problem, *extra, *privacy,
                          "--epochs", FAMILY_EPOCHS.get(spec.model_family, EPOCHS), "--inline", "--json",
                          "--predictions-out", predictions, "--user", admin.username)

    assert code == 0, body.get("errors") or body["run"].get("error")
    run = body["run"]
    assert run["status"] == "succeeded", run["error"]
    assert run["task_type"] == spec.task_type.value
    baseline = run["baseline"]
    assert baseline["name"] and set(baseline["metrics"]) == set(run["metrics"])
    assert spec.primary_metric in run["metrics"]
    assert run["split"]["method"]
    assert run["notes"] and all(isinstance(n, str) and n for n in run["notes"])
    assert run["privacy"]["enabled"] is ((vertical, problem) in PRIVATE)
    if (vertical, problem) in PRIVATE:
        assert 0 < run["privacy"]["epsilon"] <= 8 + 1e-6
        assert run["nonprivate_metrics"] is not None
    assert body["model_version"]["status"] == "pending_review"
    with predictions.open() as handle:
        table = list(csv.DictReader(handle))
    assert table and "row_id" in table[0]
    stored = TrainingRun.objects.get(pk=run["id"])
    assert stored.result["charts"], "the results page needs the task's charts"
    json.dumps(body)
