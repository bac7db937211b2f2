"""A given test file for the response-log families holds other students: a student with
answers in both files is refused when the file is attached (web, API, command) and when the
mapping is confirmed, naming the students and the fix, not only when a run trains (issue 13)."""

from __future__ import annotations

import pandas as pd
import pytest
from django.urls import reverse

from ingestion.models import DatasetVersion
from ingestion.services import UploadError, attach_companion, upload_dataset
from tests.conftest import call_pipeline, csv_upload

pytestmark = pytest.mark.django_db

SHARED = ("s03", "s07")


def _answers(students, *, other_ids=None) -> pd.DataFrame:
    """Six answers per student on three skills, in order; ``other_ids`` a second id column
    (a pseudonym) for each student."""
    rows = []
    for k, student in enumerate(students):
        for step in range(6):
            rows.append({"student_id": student, "skill": f"k{step % 3}", "order": step,
                         "correct": (k + step) % 2})
            if other_ids is not None:
                rows[-1]["learner"] = other_ids[k]
    return pd.DataFrame(rows)


def _files():
    """A training file of students s00..s29 and a test file of t00..t09 plus SHARED."""
    train = _answers([f"s{k:02d}" for k in range(30)])
    test = _answers([f"t{k:02d}" for k in range(10)] + list(SHARED))
    return train, test


def _csv(frame: pd.DataFrame, name: str):
    return csv_upload(frame.to_csv(index=False).encode(), name)


def _assert_names_students_and_fix(message: str) -> None:
    assert "2 students have rows in both the training and the test file" in message
    assert "'s03', 's07'" in message and "student_id" in message
    assert "remove them from one of the files" in message


@pytest.mark.parametrize("problem", ["knowledge_tracing", "next_exercise"])
def test_attaching_a_test_file_that_shares_students_is_refused(analyst, problem):
    train, test = _files()
    version = upload_dataset(user=analyst, vertical="education", problem=problem,
                             file=_csv(train, "train.csv"))
    with pytest.raises(UploadError) as refused:
        attach_companion(version=version, user=analyst, kind="test_set",
                         file=_csv(test, "test.csv"))
    (error,) = refused.value.errors
    assert error["code"] == "companion_mismatch"
    assert error["message"].startswith("test.csv does not fit the uploaded table")
    _assert_names_students_and_fix(error["message"])
    assert not version.companions.exists()  # rolled back: the version stays as it was
    # Without the shared students the same file is taken.
    kept = test[~test["student_id"].isin(SHARED)]
    attach_companion(version=version, user=analyst, kind="test_set",
                     file=_csv(kept, "test.csv"))
    assert [c.kind for c in version.companions.all()] == ["test_set"]


def test_the_api_refuses_it_at_the_attach(api_client, analyst):
    train, test = _files()
    client = api_client(analyst)
    upload = client.post("/api/v1/datasets/", {
        "vertical": "education", "problem": "knowledge_tracing",
        "file": _csv(train, "train.csv")}, format="multipart")
    assert upload.status_code == 201, upload.json()
    refused = client.post(f"/api/v1/dataset-versions/{upload.json()['id']}/companions/",
                          {"kind": "test_set", "file": _csv(test, "test.csv")},
                          format="multipart")
    assert refused.status_code == 400
    (error,) = [e for e in refused.json()["errors"] if e["code"] == "companion_mismatch"]
    _assert_names_students_and_fix(error["message"])


def test_the_web_upload_refuses_it(client, analyst):
    client.force_login(analyst)
    train, test = _files()
    response = client.post(reverse("dataset_upload", args=["education", "knowledge_tracing"]),
                           {"file": _csv(train, "train.csv"), "test_file": _csv(test, "test.csv")},
                           follow=True)
    # The training file is kept, to map or to upload again with a fitting test file.
    (version,) = DatasetVersion.objects.all()
    assert response.redirect_chain[-1][0] == reverse("dataset_mapping", args=[version.pk])
    page = response.content.decode()
    assert "test.csv was not added" in page
    assert "2 students have rows in both the training and the test file" in page
    assert not version.companions.exists()


def test_the_command_refuses_it_before_training(tmp_path, admin):
    train, test = _files()
    paths = tmp_path / "train.csv", tmp_path / "test.csv"
    train.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    code, body = call_pipeline(paths[0], "--vertical", "education", "--problem",
                               "knowledge_tracing", "--test-file", paths[1], "--inline",
                               "--json", "--user", admin.username)
    assert code == 1 and "run" not in body
    (error,) = body["errors"]
    assert error["code"] == "companion_mismatch"
    _assert_names_students_and_fix(error["message"])


def test_mapping_another_student_column_that_is_shared_is_refused(api_client, analyst):
    # The suggested student column (student_id) differs between the files, so the test file
    # is attached; the analyst then maps a pseudonym column that the files share.
    pseudonyms = [f"p{k:02d}" for k in range(30)]
    train = _answers([f"s{k:02d}" for k in range(30)], other_ids=pseudonyms)
    test = _answers([f"t{k:02d}" for k in range(10)], other_ids=pseudonyms[:10])
    client = api_client(analyst)
    upload = client.post("/api/v1/datasets/", {
        "vertical": "education", "problem": "knowledge_tracing",
        "file": _csv(train, "train.csv")}, format="multipart")
    version = upload.json()["id"]
    attached = client.post(f"/api/v1/dataset-versions/{version}/companions/",
                           {"kind": "test_set", "file": _csv(test, "test.csv")},
                           format="multipart")
    assert attached.status_code == 201, attached.json()
    refused = client.post(f"/api/v1/dataset-versions/{version}/mapping/",
                          {"target": "correct", "exclude": ["student_id"],
                           "roles": [["student", "learner"], ["skill", "skill"],
                                     ["time", "order"]]}, format="json")
    assert refused.status_code == 400
    (error,) = [e for e in refused.json()["errors"] if e["code"] == "companion_mismatch"]
    message = error["message"]
    assert "10 students have rows in both the training and the test file" in message
    assert "'p00', 'p01', 'p02', 'p03', 'p04' and 5 more" in message
    assert "the student column is 'learner'" in message
    assert DatasetVersion.objects.get(pk=version).status == DatasetVersion.Status.REJECTED
