"""Mapping suggestions from hints, and the issues validate() reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml_core.spec import (
    Banding,
    ColumnMapping,
    ColumnRole,
    FairnessPolicy,
    ProblemSpec,
    RoleHint,
    TaskType,
)
from ml_core.tables import read_table
from ml_core.validation import ValidationIssue, has_errors, suggest_mapping, validate

SPEC = ProblemSpec(
    key="credit_risk",
    name="Credit",
    description="test",
    task_type=TaskType.BINARY_CLASSIFICATION,
    hints=(
        RoleHint(role=ColumnRole.TARGET, names=("default", "target", "class", "y"), required=True),
        RoleHint(role=ColumnRole.ID, names=("applicant_id", "id")),
        RoleHint(role=ColumnRole.EXCLUDE, names=("personal_status",)),
    ),
    sensitive_hints=("sex", "gender", "age", "foreign_worker", "race"),
    banding=(Banding(column_hint="age", edges=(25, 35, 50)),),
    fairness=FairnessPolicy(min_group_size=20),
    min_rows=50,
)


def _frame(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Applicant ID": np.arange(1, n + 1),
            "Age": rng.integers(26, 60, n),
            "Sex": rng.choice(["f", "m"], n),
            "income": rng.normal(3000, 500, n).round(2),
            "average_balance": rng.normal(100, 10, n),
            "Default": rng.choice([0, 1], n),
        }
    )


def _codes(issues: list[ValidationIssue]) -> list[str]:
    return [issue.code for issue in issues]


def test_suggest_mapping_from_hints():
    mapping = suggest_mapping(_frame(), SPEC)
    assert mapping == ColumnMapping(
        target="Default", sensitive=("Age", "Sex"), id="Applicant ID",
    )


def test_exact_match_beats_substring_and_no_column_gets_two_roles():
    frame = pd.DataFrame({
        "default_history": [0, 1] * 30, "target": [1, 0] * 30, "applicant_gender": ["f", "m"] * 30,
        "race": ["a", "b"] * 30, "trace_id": range(60), "personal_status": ["x", "y"] * 30,
    })
    mapping = suggest_mapping(frame, SPEC)
    assert mapping.target == "target"  # exact 'target' beats 'default' inside a longer name
    assert mapping.sensitive == ("applicant_gender", "race")  # not 'trace_id'
    assert mapping.id == "trace_id"  # a unique column named like an id
    assert mapping.exclude == ("personal_status",)
    roles = [mapping.target, mapping.id, *mapping.sensitive, *mapping.exclude]
    assert len(roles) == len(set(roles))


def test_short_hints_match_whole_words_only():
    frame = pd.DataFrame({"average_balance": [1, 2], "y_true": [0, 1], "client age": [30, 40]})
    mapping = suggest_mapping(frame, SPEC)
    assert mapping.target == "y_true"
    assert mapping.sensitive == ("client age",)


def test_headerless_file_leaves_the_target_to_the_analyst():
    frame, _ = read_table(b"A11 6 1\nA12 48 2\nA11 12 1\nA14 6 2\n")
    mapping = suggest_mapping(frame, SPEC)
    assert mapping.target == ""
    assert "target_required" in _codes(validate(frame, mapping, SPEC))


def test_a_clean_table_has_no_issues():
    frame = _frame()
    assert validate(frame, suggest_mapping(frame, SPEC), SPEC) == []


def test_missing_target_values_name_the_rows():
    frame = _frame()
    frame["Default"] = frame["Default"].astype(float)
    frame.loc[[3, 16, 87], "Default"] = np.nan
    issues = validate(frame, ColumnMapping(target="Default"), SPEC)
    (issue,) = [i for i in issues if i.code == "missing_target_values"]
    assert issue.message == "Column 'Default' is missing a value in 3 rows: 4, 17, 88."
    assert issue.rows == (4, 17, 88) and issue.column == "Default"
    assert issue.severity == "error"


def test_row_lists_stop_at_twenty():
    frame = _frame()
    frame["Default"] = frame["Default"].astype(float)
    frame.loc[:29, "Default"] = np.nan
    (issue,) = [i for i in validate(frame, ColumnMapping(target="Default"), SPEC)
                if i.code == "missing_target_values"]
    assert issue.rows == tuple(range(1, 21))
    assert "30 rows" in issue.message and "and 10 more" in issue.message


def test_unknown_columns_and_missing_target():
    mapping = ColumnMapping(target="outcome", sensitive=("Gender",), exclude=("nope",))
    issues = validate(_frame(), mapping, SPEC)
    assert _codes(issues)[:3] == ["missing_target", "unknown_column", "unknown_column"]
    assert "'outcome'" in issues[0].message


def test_single_class_and_not_binary_targets():
    frame = _frame()
    frame["Default"] = 1
    assert "single_class" in _codes(validate(frame, ColumnMapping(target="Default"), SPEC))
    frame["Default"] = np.arange(len(frame)) % 3
    issues = validate(frame, ColumnMapping(target="Default"), SPEC)
    assert "target_not_binary" in _codes(issues)


def test_labels_1_and_2_are_binary_and_positive_label_must_occur():
    frame = _frame()
    frame["Default"] = frame["Default"] + 1  # german.data's 1 = good, 2 = bad
    assert validate(frame, ColumnMapping(target="Default", positive_label="2"), SPEC) == []
    issues = validate(frame, ColumnMapping(target="Default", positive_label="bad"), SPEC)
    assert _codes(issues) == ["positive_label_unknown"]


def test_too_few_rows():
    frame = _frame(n=30)
    assert "too_few_rows" in _codes(validate(frame, ColumnMapping(target="Default"), SPEC))


def test_text_in_a_numeric_feature_names_rows():
    frame = _frame().astype({"income": object})
    frame.loc[[4, 9], "income"] = ["n.a.", "unknown"]
    issues = validate(frame, ColumnMapping(target="Default"), SPEC)
    (issue,) = [i for i in issues if i.code == "text_in_numeric"]
    assert issue.column == "income" and issue.rows == (5, 10)
    assert "'n.a.'" in issue.message


def test_small_sensitive_groups_are_warned_after_banding():
    frame = _frame()
    frame["Age"] = 40
    frame.loc[:8, "Age"] = 22  # 9 rows in the '<25' band
    frame.loc[:8, "Sex"] = "x"
    issues = validate(frame, ColumnMapping(target="Default", sensitive=("Age", "Sex")), SPEC)
    small = [i for i in issues if i.code == "small_group"]
    assert [i.message for i in small] == [
        "Group '<25' of 'Age' has 9 rows; groups under 20 are reported but not judged",
        "Group 'x' of 'Sex' has 9 rows; groups under 20 are reported but not judged",
    ]
    assert all(i.severity == "warning" for i in small)
    assert not has_errors(issues)


def test_german_style_small_group_message():
    frame = pd.DataFrame({
        "column_9": ["A93"] * 80 + ["A95"] * 9 + ["A92"] * 31,
        "column_21": [1, 2] * 60,
    })
    issues = validate(frame, ColumnMapping(target="column_21", sensitive=("column_9",)), SPEC)
    assert [i.message for i in issues] == [
        "Group 'A95' of 'column_9' has 9 rows; groups under 20 are reported but not judged"
    ]


def test_constant_columns_and_role_conflicts():
    frame = _frame()
    frame["branch"] = "north"
    issues = validate(frame, ColumnMapping(target="Default", sensitive=("Default",)), SPEC)
    codes = _codes(issues)
    assert "constant_column" in codes and "role_conflict" in codes
    (constant,) = [i for i in issues if i.code == "constant_column"]
    assert constant.column == "branch" and constant.severity == "warning"


def test_issues_are_json_ready():
    frame = _frame()
    frame.loc[0, "Default"] = 5
    issues = validate(frame, ColumnMapping(target="Default"), SPEC)
    assert issues
    payload = [issue.to_dict() for issue in issues]
    assert json.loads(json.dumps(payload)) == payload


@pytest.mark.parametrize("target", ["", "Default"])
def test_has_errors(target):
    issues = validate(_frame(), ColumnMapping(target=target), SPEC)
    assert has_errors(issues) is (target == "")
