"""Column kinds as real exports bring them: codes that look like numbers are categorical,
the analyst's override wins, and only a column the model reads can block an upload."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_core.column_types import infer_column_type, parse_override, typed_column
from ml_core.data import TabularEncoder
from ml_core.spec import ColumnMapping
from ml_core.tables import read_table
from ml_core.validation import has_errors, validate
from verticals.registry import get_problem

CREDIT = get_problem("finance", "credit_risk").spec
RECOMMENDER = get_problem("retail", "recommendation").spec


def _icd9(n: int, seed: int = 0) -> list[str]:
    """Mostly numeric ICD-9 codes with 4% V- and E-codes, as MIMIC-III's icd9_code."""
    rng = np.random.default_rng(seed)
    codes = [f"{rng.integers(1, 999)}.{rng.integers(0, 99)}" for _ in range(n)]
    for position in rng.choice(n, n // 25, replace=False):
        codes[position] = (f"V{rng.integers(10, 99)}" if position % 2
                           else f"E{rng.integers(800, 999)}")
    return codes


def _credit(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "income": rng.normal(3000, 800, n).round(),
        "age": rng.integers(20, 70, n),
        "default": rng.integers(0, 2, n),
    })


def test_letter_prefixed_minority_codes_are_categorical():
    kind = infer_column_type(pd.Series(_icd9(400), dtype="str"))
    assert kind.kind == "categorical"
    assert "letters" in kind.reason


def test_mixed_postcodes_and_leading_zeros_are_categorical():
    postcodes = pd.Series(["02139", "L9G2B", "10001", "02140", "M5V3L9", "94105"] * 20,
                          dtype="str")
    assert infer_column_type(postcodes).kind == "categorical"
    drg = pd.Series(["001", "0043", "870", "190"] * 30, dtype="str")
    assert infer_column_type(drg).kind == "categorical"


def test_numbers_with_typos_stay_numeric_and_free_text_is_text():
    typos = pd.Series([str(v) for v in range(200)] + ["unknown", "12k"], dtype="str")
    assert infer_column_type(typos).kind == "numeric"
    notes = pd.Series(["patient felt dizzy after the dose", "no complaints at discharge"] * 10)
    assert infer_column_type(notes).kind == "text"
    assert infer_column_type(pd.Series(["2024-01-02", "2024-02-03"] * 10)).kind == "date"


def test_reading_keeps_leading_zeros_and_notes_it():
    frame, options = read_table(b"drg_code,cost,ok\n001,10,1\n0043,12,0\n870,9,1\n")
    assert frame["drg_code"].tolist() == ["001", "0043", "870"]
    assert frame["cost"].dtype == np.int64
    assert any("leading zeros" in note and "'001'" in note for note in options.notes)


def test_code_column_passes_validation_and_trains_as_categories():
    frame = _credit()
    frame["branch_code"] = pd.Series(_icd9(len(frame)), dtype="str")
    assert not has_errors(validate(frame, ColumnMapping(target="default"), CREDIT))


def test_text_in_a_used_numeric_column_names_the_override_and_the_override_fixes_it():
    frame = _credit().astype({"income": object})
    frame.loc[[3, 8], "income"] = ["unknown", "n.a."]
    (issue,) = [i for i in validate(frame, ColumnMapping(target="default"), CREDIT)
                if i.code == "text_in_numeric"]
    assert issue.severity == "error" and issue.rows == (4, 9)
    assert "--column-type income=categorical" in issue.message
    assert '"column_types": {"income": "numeric"}' in issue.message

    as_numbers = ColumnMapping(target="default", column_types=(("income", "numeric"),))
    issues = validate(frame, as_numbers, CREDIT)
    assert not has_errors(issues)
    assert [i.code for i in issues if i.column == "income"] == ["text_read_as_missing"]
    encoder = TabularEncoder.fit(frame, ("income", "age"), column_types={"income": "numeric"})
    assert encoder.numeric == ("income", "age")
    assert not np.isnan(encoder.transform(frame)).any()


def test_a_problem_in_a_column_the_model_does_not_read_is_a_warning():
    # A user-attributes postcode the recommender never reads (issue 13, finding 1).
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame({
        "user_id": rng.integers(0, 30, n), "item_id": rng.integers(0, 40, n),
        "purchased": 1,
        "zip": pd.Series([str(v) for v in rng.integers(10000, 99999, n)], dtype="str"),
    }).astype({"zip": object})
    frame.loc[[5, 6], "zip"] = ["78000S", "unknown"]
    mapping = ColumnMapping(target="purchased", roles=(("user", "user_id"), ("item", "item_id")))
    issues = [i for i in validate(frame, mapping, RECOMMENDER) if i.column == "zip"]
    assert [(i.code, i.severity) for i in issues] == [("text_in_numeric", "warning")]
    assert "does not read this column" in issues[0].message


def test_a_numeric_code_typed_categorical_is_one_hot_not_scaled():
    frame = pd.DataFrame({"branch": [101, 205, 101, 307, 205] * 20, "y": [0, 1] * 50})
    encoder = TabularEncoder.fit(frame, ("branch",), column_types={"branch": "categorical"})
    assert encoder.numeric == () and encoder.categorical == ("branch",)
    assert {"branch=101", "branch=205", "branch=307"} <= set(encoder.feature_names)
    restored = TabularEncoder.from_dict(encoder.to_dict())
    np.testing.assert_array_equal(restored.transform(frame), encoder.transform(frame))


def test_override_parsing_names_the_kinds():
    assert parse_override("icd9_code=categorical") == ("icd9_code", "categorical")
    assert parse_override("a=b=date") == ("a=b", "date")
    with pytest.raises(ValueError, match="categorical, numeric, date, text"):
        parse_override("x=code")
    days = typed_column(pd.Series(["1970-01-11", None]), "date")
    assert days.iloc[0] == 10.0 and np.isnan(days.iloc[1])
