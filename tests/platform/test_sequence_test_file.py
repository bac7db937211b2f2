"""A given test file that carries its own target, for the response-log families (knowledge
tracing, next exercise): its students are exactly the test part, validation and training
students come from the training file (issue 13)."""

from __future__ import annotations

import pytest

from ml_core.data import attach_labelled_test, given_test_units
from ml_core.families import get_family
from ml_core.families.knowledge_tracing import prepare
from tests.conftest import call_pipeline
from verticals.registry import get_problem

pytestmark = pytest.mark.django_db

PROBLEM = get_problem("education", "knowledge_tracing")


def _files(n_students: int = 60, seed: int = 0):
    frame = PROBLEM.sample_data(4000, seed)
    student = PROBLEM.sample_mapping.role("student")
    students = sorted(frame[student].astype(str).unique())
    tested = set(students[:12])
    is_test = frame[student].astype(str).isin(tested)
    return frame[~is_test], frame[is_test], tested, student


def test_the_given_students_are_the_test_part():
    train, test, tested, student = _files()
    combined = attach_labelled_test(train, test)
    assert given_test_units(combined, student) == tested
    prepared = prepare(combined, PROBLEM.sample_mapping, PROBLEM.spec, PROBLEM.spec.train)
    assert set(prepared.split.test) == tested
    assert not tested & (set(prepared.split.train) | set(prepared.split.val))
    assert prepared.split.val  # validation from the training file's students
    for name in ("knowledge_tracing", "next_exercise"):
        assert get_family(name).supports.labelled_test_file


def test_a_student_in_both_files_is_refused():
    train, test, tested, student = _files()
    overlap = train[train[student].astype(str) == sorted(set(train[student].astype(str)))[0]]
    combined = attach_labelled_test(train, test.assign(**{student: overlap[student].iloc[0]}))
    with pytest.raises(ValueError, match="both the training and the test file"):
        given_test_units(combined, student)


@pytest.mark.slow
def test_the_command_tests_knowledge_tracing_on_the_given_file(tmp_path, admin):
    train, test, tested, _ = _files()
    paths = tmp_path / "train.csv", tmp_path / "test.csv"
    train.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    code, body = call_pipeline(paths[0], "--vertical", "education", "--problem",
                               "knowledge_tracing", "--test-file", paths[1], "--epochs", "2",
                               "--inline", "--json", "--user", admin.username)
    assert code == 0, body.get("errors") or body["run"]["error"]
    assert body["run"]["split"]["test"] == len(tested)
