"""Outcomes in any common encoding: two values as they are, chosen positive labels for a
multi-class outcome, a confirmed (or the suggested) threshold for a numeric one; the
split says which rule was used, and a refusal names the fix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ml_core.data import binary_target, encode_and_split
from ml_core.spec import ColumnMapping, TargetRule
from ml_core.validation import has_errors, suggest_mapping, validate
from verticals.registry import get_problem

OUTCOME = get_problem("education", "outcome_risk").spec
TRAIN = dataclasses.replace(OUTCOME.train, seed=0)


def _students(target: pd.Series) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = len(target)
    return pd.DataFrame({"studytime": rng.integers(1, 5, n), "absences": rng.poisson(4, n),
                         "school": rng.choice(["GP", "MS"], n), "outcome": target})


@pytest.mark.parametrize("values", [[0, 1], ["yes", "no"], [True, False], ["Pass", "Fail"]])
def test_binary_outcomes_are_used_as_they_are(values):
    target = pd.Series(values * 60, name="outcome")
    frame = _students(target)
    mapping = suggest_mapping(frame.rename(columns={"outcome": "G3"}), OUTCOME)
    assert mapping.target_rule is None  # two values: no threshold is suggested
    mapping = ColumnMapping(target="outcome")
    assert not has_errors(validate(frame, mapping, OUTCOME))
    split = encode_and_split(frame, mapping, TRAIN, target_rule=OUTCOME.target_rule)
    assert "as given" in split.target_rule
    assert set(np.unique(split.y_train)) == {0, 1}


def test_a_multi_class_text_outcome_asks_for_the_positive_labels():
    target = pd.Series(["Graduate", "Dropout", "Enrolled"] * 50, name="outcome")
    frame = _students(target)
    (issue,) = [i for i in validate(frame, ColumnMapping(target="outcome"), OUTCOME)
                if i.severity == "error"]
    assert issue.code == "target_not_binary"
    assert "--positive-label Dropout" in issue.message and "positive_labels" in issue.message

    mapping = ColumnMapping(target="outcome", positive_labels=("Dropout", "Enrolled"))
    assert not has_errors(validate(frame, mapping, OUTCOME))
    split = encode_and_split(frame, mapping, TRAIN)
    labels = frame.loc[np.concatenate([split.ids_train, split.ids_val, split.ids_test]),
                       "outcome"]
    y = np.concatenate([split.y_train, split.y_val, split.y_test])
    np.testing.assert_array_equal(y, labels.isin(["Dropout", "Enrolled"]).astype(int))
    assert split.positive_label == "Dropout or Enrolled"
    assert "'Dropout' or 'Enrolled'" in split.summary()["target_rule"]

    unknown = ColumnMapping(target="outcome", positive_labels=("Withdrawn",))
    assert [i.code for i in validate(frame, unknown, OUTCOME)] == ["positive_label_unknown"]


def test_a_numeric_target_gets_the_suggested_rule_which_the_analyst_may_edit():
    grades = pd.Series(np.arange(150) % 21, name="G3")
    frame = _students(grades).drop(columns="outcome").assign(G3=grades)
    suggested = suggest_mapping(frame, OUTCOME)
    assert suggested.target_rule == OUTCOME.target_rule
    assert not has_errors(validate(frame, suggested, OUTCOME))

    edited = dataclasses.replace(suggested, target_rule=TargetRule(
        threshold=12, positive_below=True, positive_text="fail", negative_text="pass"))
    split = encode_and_split(frame, edited, TRAIN, target_rule=OUTCOME.target_rule)
    assert split.target_rule == "fail = G3 < 12, pass = G3 >= 12"
    ids = np.concatenate([split.ids_train, split.ids_val, split.ids_test])
    y = np.concatenate([split.y_train, split.y_val, split.y_test])
    np.testing.assert_array_equal(y, (frame.loc[ids, "G3"] < 12).astype(int))

    # Without a confirmed rule the problem's is used, and validation says so aloud.
    bare = dataclasses.replace(suggested, target_rule=None)
    warnings = [i for i in validate(frame, bare, OUTCOME) if i.code == "target_rule_suggested"]
    assert warnings and "--target-rule '<10'" in warnings[0].message


def test_a_rule_on_a_binary_column_is_refused_naming_the_fix():
    frame = _students(pd.Series([0, 1] * 60, name="G3")).drop(columns="outcome")
    frame["G3"] = [0, 1] * 60
    mapping = ColumnMapping(target="G3", target_rule=OUTCOME.target_rule)
    (issue,) = [i for i in validate(frame, mapping, OUTCOME) if i.severity == "error"]
    assert issue.code == "single_class" and "clear it" in issue.message


def test_one_positive_label_of_a_binary_target_names_its_positive_class():
    target = pd.Series(["good", "bad", "good"] * 40, name="outcome")
    binary = binary_target(target, ColumnMapping(target="outcome", positive_labels=("good",)))
    assert binary.positive == "good" and set(binary.labels) == {"good", "bad"}


def test_mapping_round_trips_its_new_fields():
    mapping = ColumnMapping(
        target="y", column_types=(("zip", "categorical"),), positive_labels=("a", "b"),
        target_rule=TargetRule(threshold=3.5, positive_below=False),
        hierarchies=(("diag_1", "icd9"),))
    assert ColumnMapping.from_dict(mapping.to_dict()) == mapping
    via_direction = TargetRule.from_dict({"threshold": 10, "direction": "below"})
    assert via_direction.positive_below
