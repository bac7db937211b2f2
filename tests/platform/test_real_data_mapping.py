"""Issue 13 through the platform's three doors (API, web, command): column types overridden,
multi-class outcomes given their positive labels, the suggested target rule confirmed or
edited, and a given test file with its own target, for a tabular problem."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse

from ingestion.models import DatasetVersion
from tests.conftest import FAST_TRAINING, csv_upload

pytestmark = pytest.mark.django_db

API = "/api/v1"


def students(n: int, seed: int = 0, *, outcome: str = "text") -> pd.DataFrame:
    """Student records with a code column (a branch code with leading zeros and typos that
    are really codes) and the outcome as text (Graduate/Dropout/Enrolled) or a grade."""
    rng = np.random.default_rng(seed)
    absences = rng.poisson(5, n)
    risk = absences / 10 + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({
        "student_id": np.arange(n),
        "branch": [f"0{b}" if b < 50 else f"B{b}" for b in rng.integers(10, 99, n)],
        "absences": absences, "studytime": rng.integers(1, 5, n),
        "sex": rng.choice(["F", "M"], n),
    })
    if outcome == "text":
        frame["Target"] = np.where(risk > 0.9, "Dropout",
                                   np.where(risk > 0.5, "Enrolled", "Graduate"))
    else:
        frame["G3"] = np.clip((15 - 8 * risk).round(), 0, 20).astype(int)
    return frame


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _upload(client, frame: pd.DataFrame, name: str = "students.csv") -> dict:
    response = client.post(f"{API}/datasets/", {
        "vertical": "education", "problem": "outcome_risk",
        "file": csv_upload(_csv(frame), name)}, format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()


def test_api_positive_labels_column_types_and_a_given_test_file(api_client, analyst):
    client = api_client(analyst)
    version = _upload(client, students(300))
    test_file = csv_upload(_csv(students(80, seed=1)), "test.csv")
    response = client.post(f"{API}/dataset-versions/{version['id']}/companions/",
                           {"kind": "test_set", "file": test_file}, format="multipart")
    assert response.status_code == 201, response.json()
    truth = client.post(f"{API}/dataset-versions/{version['id']}/companions/",
                        {"kind": "test_truth", "file": csv_upload(b"x\n1\n", "t.csv")},
                        format="multipart")
    assert truth.status_code == 400 and "carries its own target" in truth.json()["detail"]

    refused = client.post(f"{API}/dataset-versions/{version['id']}/mapping/",
                          {"target": "Target"}, format="json")
    assert refused.status_code == 400
    (error,) = [e for e in refused.json()["errors"] if e["code"] == "target_not_binary"]
    assert '"positive_labels"' in error["message"]

    version = _upload(client, students(300))
    client.post(f"{API}/dataset-versions/{version['id']}/companions/",
                {"kind": "test_set", "file": csv_upload(_csv(students(80, seed=1)))},
                format="multipart")
    response = client.post(f"{API}/dataset-versions/{version['id']}/mapping/", {
        "target": "Target", "positive_labels": ["Dropout"],
        "column_types": {"studytime": "categorical"}}, format="json")
    assert response.status_code == 200, response.json()
    stored = DatasetVersion.objects.get(pk=version["id"])
    assert stored.mapping["positive_labels"] == ["Dropout"]
    assert stored.mapping["column_types"] == {"studytime": "categorical"}
    assert "__split__" not in stored.columns

    run = client.post(f"{API}/runs/", {"dataset_version": stored.pk, "config": FAST_TRAINING,
                                       "privacy": {"enabled": True}}, format="json")
    assert run.status_code in (201, 202), run.json()


def test_api_confirms_or_edits_the_suggested_target_rule(api_client, analyst):
    client = api_client(analyst)
    version = _upload(client, students(200, outcome="grade"))
    assert version["suggested_mapping"]["target_rule"]["threshold"] == 10
    response = client.post(f"{API}/dataset-versions/{version['id']}/mapping/", {
        "target_rule": {"threshold": 12, "direction": "below"}}, format="json")
    assert response.status_code == 200, response.json()
    rule = DatasetVersion.objects.get(pk=version["id"]).mapping["target_rule"]
    assert rule == {"threshold": 12.0, "positive_below": True, "positive_text": "fail",
                    "negative_text": "pass"}


def test_web_mapping_offers_types_positive_labels_and_the_rule(client, analyst):
    client.force_login(analyst)
    client.post(reverse("dataset_upload", args=["education", "outcome_risk"]),
                {"file": csv_upload(_csv(students(200)))})
    version = DatasetVersion.objects.get()
    html = client.get(reverse("dataset_mapping", args=[version.pk])).content.decode()
    assert 'name="type_1"' in html and "codes: digits with leading zeros" in html
    for label in ("Dropout", "Enrolled", "Graduate"):
        assert f'value="{label}"' in html
    columns = version.columns
    post = {f"role_{i}": ("target" if c == "Target" else "id" if c == "student_id"
                          else "sensitive" if c == "sex" else "feature")
            for i, c in enumerate(columns)}
    post |= {"positive_labels": ["Dropout", "Enrolled"],
             f"type_{columns.index('studytime')}": "categorical"}
    client.post(reverse("dataset_mapping", args=[version.pk]), post)
    version.refresh_from_db()
    assert version.status == DatasetVersion.Status.VALIDATED, version.errors
    assert version.mapping["positive_labels"] == ["Dropout", "Enrolled"]
    assert version.mapping["column_types"] == {"studytime": "categorical"}


def test_web_mapping_shows_the_problem_rule_for_a_grade_to_confirm(client, analyst):
    client.force_login(analyst)
    client.post(reverse("dataset_upload", args=["education", "outcome_risk"]),
                {"file": csv_upload(_csv(students(200, outcome="grade")))})
    version = DatasetVersion.objects.get()
    html = client.get(reverse("dataset_mapping", args=[version.pk])).content.decode()
    assert 'name="rule_threshold"' in html and 'value="10.0"' in html
    assert "fail = target &lt; 10" in html


def _command(path, *args) -> tuple[int, dict]:
    out = io.StringIO()
    code = 0
    try:
        call_command("pipeline", str(path), *args, "--json", stdout=out)
    except SystemExit as exit_:
        code = exit_.code
    return code, json.loads(out.getvalue())


def test_command_types_labels_rule_and_test_file(tmp_path, admin):
    train, test = tmp_path / "students.csv", tmp_path / "test.csv"
    train.write_bytes(_csv(students(300)))
    test.write_bytes(_csv(students(80, seed=1)))
    common = ("--vertical", "education", "--problem", "outcome_risk", "--user", admin.username)
    code, body = _command(train, *common, "--target", "Target", "--validate-only")
    assert code == 1 and any("--positive-label" in e["message"] for e in body["errors"])

    code, body = _command(train, *common, "--target", "Target", "--positive-label", "Dropout",
                          "--positive-label", "Enrolled", "--column-type", "studytime=categorical",
                          "--test-file", str(test), "--inline", "--epochs", "2")
    assert code == 0, body.get("errors") or body["run"]["error"]
    run = body["run"]
    assert run["split"]["test"] == 80 and run["split"]["method"].startswith("given test file")
    assert "'Dropout' or 'Enrolled'" in run["split"]["target_rule"]
    assert "gradient_boosting" in run["references"]

    grades = tmp_path / "grades.csv"
    grades.write_bytes(_csv(students(200, outcome="grade")))
    code, body = _command(grades, *common, "--target-rule", "<12", "--validate-only")
    assert code == 0 and body["dataset"]["mapping"]["target_rule"]["threshold"] == 12.0
    code, body = _command(grades, *common, "--column-type", "G3=code", "--validate-only")
    assert code == 1 and "categorical, numeric, date, text" in body["errors"][0]["message"]


def test_web_upload_takes_a_given_test_file_for_a_tabular_problem(client, analyst):
    client.force_login(analyst)
    client.post(reverse("dataset_upload", args=["education", "outcome_risk"]), {
        "file": csv_upload(_csv(students(200))),
        "test_file": csv_upload(_csv(students(60, seed=2)), "test.csv")})
    version = DatasetVersion.objects.get()
    assert [c.kind for c in version.companions.all()] == ["test_set"]
    assert "__split__" not in version.columns


def test_run_page_rows_show_the_trees_reference_beside_the_baseline():
    from types import SimpleNamespace

    from training import result_display

    result = {"baseline": {"name": "logistic_regression", "metrics": {"roc_auc": 0.78}},
              "references": {"gradient_boosting": {"metrics": {"roc_auc": 0.81}}},
              "nonprivate_metrics": {"roc_auc": 0.79}}
    run = SimpleNamespace(result=result, metrics={"roc_auc": 0.77},
                          vertical="finance", problem="credit_risk")
    assert result_display.baseline_names(result) == ["logistic_regression", "gradient_boosting"]
    (row,) = result_display.metric_rows(run)
    assert (row["model"], row["baseline"], row["others"], row["twin"]) == (
        0.77, 0.78, [0.81], 0.79)
