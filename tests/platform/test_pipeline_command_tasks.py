"""``manage.py pipeline`` for every registered problem: each problem's sample data written to
CSV, mapped with ``--column ROLE=COL`` (the rest from the suggested mapping), trained
in-process for a few epochs, and the JSON checked for the task's metrics beside its
baseline, the split, the notes and the task type.

Kept fast: small tables, two or three epochs, one private run (recommendation: embeddings
under DP-SGD) and the others non-private.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ingestion.models import CompanionFile, DatasetVersion
from tests.conftest import call_pipeline as pipeline
from training.models import TrainingRun
from verticals.registry import all_problems, get_problem

pytestmark = pytest.mark.django_db


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
    # Private at user level: a few hundred users for a private item vocabulary (issue 14).
    ("retail", "recommendation"): (6000, ["--column", "user=user_id",
                                          "--column", "item=product_id"]),
    ("education", "knowledge_tracing"): (0, ["--column", "student=student_id"]),
    ("education", "next_exercise"): (0, []),
    ("education", "outcome_risk"): (300, ["--exclude", "G1", "--exclude", "G2"]),
    ("manufacturing", "failure_prediction"): (600, []),
    ("manufacturing", "remaining_useful_life"): (0, ["--column", "unit=unit",
                                                     "--column", "cycle=cycle"]),
}
# Problems that take a ZIP of images, not a table: their pipeline runs are in
# tests/platform/test_pipeline_images.py.
ARCHIVE_PROBLEMS = {("manufacturing", "visual_inspection")}
PRIVATE = {("retail", "recommendation")}
EPOCHS = 2
FAMILY_EPOCHS = {"text_encoder": 1}


def test_every_registered_problem_has_a_case() -> None:
    assert {(v.key, p.key) for v, p in all_problems()} <= set(CASES) | ARCHIVE_PROBLEMS


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
    epochs = FAMILY_EPOCHS.get(spec.model_family, EPOCHS)

    code, body = pipeline(path, "--vertical", vertical, "--problem", problem, *extra, *privacy,
                          "--epochs", epochs, "--inline", "--json",
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


# --- second files ---------------------------------------------------------------------------


@pytest.mark.slow
def test_attributes_file_is_joined_on_the_user_and_its_columns_audited(tmp_path, admin):
    frame = get_problem("retail", "recommendation").sample_data(400, 0)
    interactions = tmp_path / "interactions.csv"
    frame.drop(columns=["age", "gender"]).to_csv(interactions, index=False)
    attributes = tmp_path / "shoppers.csv"
    people = frame.groupby("user_id", as_index=False)[["age", "gender"]].first()
    people.rename(columns={"user_id": "customer"}).to_csv(attributes, index=False)

    code, body = pipeline(interactions, "--vertical", "retail", "--problem", "recommendation",
                          "--attributes", attributes, "--sensitive", "gender", "--no-privacy",
                          "--epochs", 2, "--inline", "--json", "--user", admin.username)

    assert code == 0, body.get("errors") or body["run"]["error"]
    assert set(body["run"]["fairness"]) == {"gender"}
    version = DatasetVersion.objects.get(pk=body["dataset"]["version_id"])
    assert {"age", "gender"} <= set(version.columns)
    companion = version.companions.get()
    assert companion.kind == CompanionFile.Kind.ATTRIBUTES
    # No column named like the interactions' key: the first column joins.
    assert companion.key_column == "customer"
    import hashlib

    assert companion.sha256 == hashlib.sha256(attributes.read_bytes()).hexdigest()
    assert version.mapping["sensitive"] == ["gender"]


def _run_to_failure(tmp_path: Path) -> tuple[Path, Path, Path, dict]:
    """Training units (full series), test units cut before failure, and their true RUL."""
    import numpy as np

    frame = get_problem("manufacturing", "remaining_useful_life").sample_data(3000, 0)
    units = sorted(frame["unit"].unique())
    test_units = units[::3]
    train = frame[~frame["unit"].isin(test_units)].drop(columns=["rul"])
    rng = np.random.default_rng(0)
    parts, truth = [], {}
    for unit in test_units:
        series = frame[frame["unit"] == unit]
        keep = int(rng.integers(len(series) // 3, len(series) - 5))
        parts.append(series.iloc[:keep])
        truth[unit] = int(series["rul"].iloc[keep - 1])
    paths = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "truth.txt"
    train.to_csv(paths[0], index=False)
    import pandas as pd

    pd.concat(parts).drop(columns=["rul"]).to_csv(paths[1], index=False)
    paths[2].write_text("\n".join(str(truth[u]) for u in sorted(truth)) + "\n")
    return (*paths, truth)


@pytest.mark.slow
def test_given_test_set_is_judged_on_each_units_last_cycle(tmp_path, admin):
    train, test, truth_file, truth = _run_to_failure(tmp_path)
    predictions = tmp_path / "rul.csv"

    code, body = pipeline(train, "--vertical", "manufacturing",
                          "--problem", "remaining_useful_life", "--test-file", test,
                          "--test-truth", truth_file, "--epochs", 2, "--inline", "--json",
                          "--predictions-out", predictions, "--user", admin.username)

    assert code == 0, body.get("errors") or body["run"]["error"]
    run = body["run"]
    assert run["split"]["method"] == "given_test_set"
    assert run["split"]["test_units"] == len(truth)
    assert run["split"]["evaluation"] == "last_cycle_per_unit"
    assert set(run["baseline"]["baselines"]) == {"last_value", "mean_rul"}
    assert any("given test set" in note for note in run["notes"])
    with predictions.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(truth)  # one judged row per test unit
    cap = get_problem("manufacturing", "remaining_useful_life").spec.train.rul_cap
    for row in rows:
        unit = row["unit"].removeprefix("test:")
        assert float(row["y_true"]) == min(truth[unit], cap)
    version = DatasetVersion.objects.get(pk=body["dataset"]["version_id"])
    assert {c.kind for c in version.companions.all()} == {"test_set", "test_truth"}
    assert version.mapping["target"] == "rul"  # filled from the truth, not computed


def test_a_test_set_is_refused_where_the_split_comes_from_the_data(tmp_path):
    path = sample_csv(tmp_path, "finance", "credit_risk", 100)

    code, body = pipeline(path, "--vertical", "finance", "--problem", "credit_risk",
                          "--test-file", path, "--test-truth", path, "--inline", "--json")

    assert code == 1
    assert body["errors"][0]["code"] == "companion_refused"
    # Its given test file carries its own target: no second file of true values.
    assert "takes no file of true values" in body["errors"][0]["message"]
    assert not TrainingRun.objects.exists()


def test_test_truth_without_test_file_is_refused(tmp_path):
    path = sample_csv(tmp_path, "manufacturing", "remaining_useful_life", 400)
    code, body = pipeline(path, "--vertical", "manufacturing",
                          "--problem", "remaining_useful_life", "--test-truth", path, "--json")
    assert code == 1 and "--test-file" in body["errors"][0]["message"]


def test_truth_for_the_wrong_number_of_units_is_refused(tmp_path):
    train, test, truth_file, truth = _run_to_failure(tmp_path)
    truth_file.write_text("10\n20\n")

    code, body = pipeline(train, "--vertical", "manufacturing",
                          "--problem", "remaining_useful_life", "--test-file", test,
                          "--test-truth", truth_file, "--json")

    assert code == 1
    assert body["errors"][0]["code"] == "companion_mismatch"
    assert f"2 true RUL values for {len(truth)} test units" in body["errors"][0]["message"]


def test_attributes_are_refused_without_a_user_or_student(tmp_path):
    path = sample_csv(tmp_path, "finance", "credit_risk", 100)
    code, body = pipeline(path, "--vertical", "finance", "--problem", "credit_risk",
                          "--attributes", path, "--json")
    assert code == 1 and body["errors"][0]["code"] == "companion_refused"


# --- roles on the command line -----------------------------------------------------------


@pytest.mark.parametrize("bad", ["colour=store", "time", "time="])
def test_bad_column_options_are_refused_with_a_message(tmp_path, bad):
    path = sample_csv(tmp_path, "retail", "demand_forecast", 100)
    code, body = pipeline(path, "--vertical", "retail", "--problem", "demand_forecast",
                          "--column", bad, "--json")
    assert code == 1 and body["errors"][0]["code"] == "bad_arguments"
    assert bad.split("=")[0] in body["errors"][0]["message"]


def test_two_columns_for_a_single_role_are_refused(tmp_path):
    path = sample_csv(tmp_path, "retail", "demand_forecast", 100)
    code, body = pipeline(path, "--vertical", "retail", "--problem", "demand_forecast",
                          "--column", "time=week", "--column", "time=store", "--json")
    assert code == 1 and "takes one" in body["errors"][0]["message"]


def test_given_roles_lay_over_the_suggestion():
    from training.pipeline import mapping_from

    suggested = {"target": "units_sold", "sensitive": ["region"], "exclude": ["note"],
                 "id": "row", "roles": [["time", "week"], ["series", "store"],
                                        ["series", "item"], ["covariate", "price"]]}
    given = [("series", "store"), ("covariate", "promo"), ("exclude", "price"),
             ("sensitive", "row")]

    mapping = mapping_from(suggested, given)

    assert mapping.target == "units_sold"
    assert mapping.role_columns("series") == ("store",)  # given: replaces the suggestion
    assert mapping.role("time") == "week"  # not given: suggested
    assert mapping.role_columns("covariate") == ("promo",)
    assert set(mapping.exclude) == {"note", "price"}  # exclusions add up
    assert mapping.sensitive == ("row",) and mapping.id is None  # one role per column


def test_training_options_are_typed_and_checked(tmp_path):
    from training.options import clean_training_options
    from training.pipeline import PipelineFailed, parse_train_options

    # The command passes raw values on; the one validation of the web and the API types them.
    assert clean_training_options(parse_train_options([
        "hidden_sizes=16,8", "learning_rate=0.01", "class_weighting=yes", "top_k=5",
    ])) == {"hidden_sizes": [16, 8], "learning_rate": 0.01, "class_weighting": True, "top_k": 5}
    with pytest.raises(PipelineFailed):
        parse_train_options(["device=cuda"])
    from training.options import InvalidRunOptions

    with pytest.raises(InvalidRunOptions, match="epochs"):
        clean_training_options(parse_train_options(["epochs=many"]))
