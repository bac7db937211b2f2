"""The real files of ../shared/data/more (skipped when absent), uploaded as published:
code columns, several rows per person, multi-class text outcomes (issue 13).

Validation runs are fast; the trained ones are marked slow and print their figures
(``pytest -s``), which docs/real-data.md records.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from ingestion.services import read_upload_table
from ml_core.column_types import infer_column_type
from tests.conftest import SHARED_DATA

MORE = SHARED_DATA / "more"

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.shared_data,
    pytest.mark.skipif(not MORE.is_dir(), reason="../shared/data/more is absent"),
]


def pipeline(path: Path, *args, expect_success: bool = True) -> dict:
    if not path.is_file():
        pytest.skip(f"{path.name} is absent")
    out = io.StringIO()
    code = 0
    try:
        call_command("pipeline", str(path), *map(str, args), "--inline", "--json", stdout=out)
    except SystemExit as exit_:
        code = exit_.code
    body = json.loads(out.getvalue())
    if expect_success:
        assert code == 0, body.get("errors") or body["run"].get("error")
    if "run" in body:
        run = body["run"]
        print(json.dumps({"file": path.name, "metrics": run["metrics"],
                          "baseline": (run["baseline"] or {}).get("metrics"),
                          "references": (run.get("references") or {}),
                          "nonprivate": run["nonprivate_metrics"], "privacy": run["privacy"],
                          "split": run["split"]}, indent=1))
    return body


def _read(path: Path):
    if not path.is_file():
        pytest.skip(f"{path.name} is absent")
    return read_upload_table(path.read_bytes(), reuse=False)


# --- code columns ------------------------------------------------------------------------


def test_mimic3_diagnosis_codes_keep_their_zeros_and_read_as_categories():
    frame, _ = _read(MORE / "mimic3_demo" / "DIAGNOSES_ICD.csv")
    codes = frame["icd9_code"].dropna()
    assert {"0389", "V4581"} <= set(codes) or codes.str.match(r"0\d").any()
    assert infer_column_type(frame["icd9_code"]).kind == "categorical"


def test_mimic3_drg_codes_keep_leading_zeros():
    frame, options = _read(MORE / "mimic3_demo" / "DRGCODES.csv")
    assert frame["drg_code"].astype(str).str.match(r"0\d").any()
    assert infer_column_type(frame["drg_code"]).kind == "categorical"


def test_restaurant_zip_with_letters_and_question_marks_is_not_refused(admin):
    body = pipeline(MORE / "uci_restaurant" / "rating_final.csv", "--vertical", "retail",
                    "--problem", "recommendation", "--column", "user=userID",
                    "--column", "item=placeID", "--target", "rating", "--validate-only",
                    "--user", admin.username)
    assert body["dataset"]["status"] == "validated"


def test_cdnow_fixed_width_ids_keep_leading_zeros():
    frame, options = _read(MORE / "cdnow" / "CDNOW_sample.txt")
    assert not options.header and frame["column_1"].iloc[0] == "00004"
    assert infer_column_type(frame["column_1"]).kind == "categorical"


# --- multi-class text outcomes -------------------------------------------------------------


def test_xapi_class_needs_positive_labels_and_the_refusal_names_them(admin):
    body = pipeline(MORE / "xapi_edu" / "xAPI-Edu-Data.csv", "--vertical", "education",
                    "--problem", "outcome_risk", "--target", "Class", "--validate-only",
                    "--user", admin.username, expect_success=False)
    (error,) = [e for e in body["errors"] if e["code"] == "target_not_binary"]
    assert "--positive-label" in error["message"]


def test_dropout_with_positive_label_validates(admin):
    body = pipeline(MORE / "uci_dropout" / "data.csv", "--vertical", "education",
                    "--problem", "outcome_risk", "--target", "Target",
                    "--positive-label", "Dropout", "--validate-only", "--user", admin.username)
    assert body["dataset"]["status"] == "validated"
    assert body["dataset"]["mapping"]["positive_labels"] == ["Dropout"]


@pytest.mark.slow
def test_xapi_low_class_trains_beside_both_references(admin):
    body = pipeline(MORE / "xapi_edu" / "xAPI-Edu-Data.csv", "--vertical", "education",
                    "--problem", "outcome_risk", "--target", "Class", "--positive-label", "L",
                    "--user", admin.username)
    run = body["run"]
    assert run["status"] == "succeeded"
    assert "gradient_boosting" in run["references"]
    assert run["split"]["target_rule"].startswith("L = positive class")
    assert run["privacy"]["epsilon"] <= 3.0 * 1.001


@pytest.mark.slow
def test_dropout_trains_beside_both_references(admin):
    body = pipeline(MORE / "uci_dropout" / "data.csv", "--vertical", "education",
                    "--problem", "outcome_risk", "--target", "Target",
                    "--positive-label", "Dropout", "--user", admin.username)
    run = body["run"]
    assert run["status"] == "succeeded"
    assert run["nonprivate_metrics"]["roc_auc"] > 0.8


# --- several rows per person ---------------------------------------------------------------


@pytest.mark.slow
def test_mimic3_admissions_in_hospital_death_trains(admin):
    body = pipeline(MORE / "mimic3_demo" / "ADMISSIONS.csv", "--vertical", "healthcare",
                    "--problem", "readmission_risk", "--target", "hospital_expire_flag",
                    "--user", admin.username)
    assert body["run"]["status"] == "succeeded"


def test_kdd_algebra_steps_validate_for_knowledge_tracing(admin):
    body = pipeline(MORE / "kdd_algebra_ct" / "ct.csv", "--vertical", "education",
                    "--problem", "knowledge_tracing", "--column", "student=Anon Student Id",
                    "--column", "skill=KC(Default)", "--column", "time=Row",
                    "--target", "Correct First Attempt", "--validate-only",
                    "--user", admin.username, expect_success=False)
    assert body.get("dataset", {}).get("status") == "validated", body.get("errors")


# --- the table in docs/real-data.md ---------------------------------------------------------

# (file under ../shared/data, vertical, problem, extra arguments). Each problem's defaults
# (privacy on at its epsilon), so that the private model, its twin and both references
# share one split.
TABLE_RUNS = [
    ("german.data", "finance", "credit_risk", ("--target", "column_21")),
    ("pima-indians-diabetes.csv", "healthcare", "readmission_risk", ()),
    ("student-por.csv", "education", "outcome_risk", ("--exclude", "G1", "--exclude", "G2")),
    ("ai4i2020.csv", "manufacturing", "failure_prediction", ("--privacy",)),
    ("more/xapi_edu/xAPI-Edu-Data.csv", "education", "outcome_risk",
     ("--target", "Class", "--positive-label", "L")),
    ("more/uci_dropout/data.csv", "education", "outcome_risk",
     ("--target", "Target", "--positive-label", "Dropout")),
    # In-hospital death; the discharge columns record it, so they are excluded.
    ("more/mimic3_demo/ADMISSIONS.csv", "healthcare", "readmission_risk",
     ("--target", "hospital_expire_flag", "--exclude", "deathtime", "--exclude", "dischtime",
      "--exclude", "discharge_location")),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "vertical", "problem", "extra"), TABLE_RUNS,
                         ids=[run[0] for run in TABLE_RUNS])
def test_real_file_row_of_the_table(admin, name, vertical, problem, extra):
    body = pipeline(SHARED_DATA / name, "--vertical", vertical, "--problem", problem, *extra,
                    "--user", admin.username)
    run = body["run"]
    assert run["status"] == "succeeded"
    metric = "pr_auc" if problem == "failure_prediction" else "roc_auc"
    trees = run["references"]["gradient_boosting"]["metrics"][metric]
    split = run["split"]
    print("| " + " | ".join([
        name, str(split["train"] + split["val"] + split["test"]), str(split["n_features"]),
        f"{run['baseline']['metrics'][metric]:.3f}", f"{trees:.3f}",
        f"{run['nonprivate_metrics'][metric]:.3f}", f"{run['metrics'][metric]:.3f}",
        f"{run['privacy']['epsilon']:.2f} of 3.0"]) + f" | {metric}")


def test_mimic4_gzip_admissions_upload_as_they_are(admin):
    """MIMIC-IV's demo ships .csv.gz: read as it is, with a read note (no edit needed)."""
    body = pipeline(MORE / "mimic4_demo" / "hosp" / "admissions.csv.gz", "--vertical",
                    "healthcare", "--problem", "readmission_risk", "--target",
                    "hospital_expire_flag", "--validate-only", "--user", admin.username,
                    expect_success=False)
    dataset = body.get("dataset") or {}
    assert dataset.get("status") == "validated", body.get("errors")
    assert "gzip-compressed" in json.dumps(dataset), sorted(dataset)
