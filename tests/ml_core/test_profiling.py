"""profile(): a JSON-ready summary of a table under its mapping."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ml_core.profiling import profile
from ml_core.spec import Banding, ColumnMapping, ProblemSpec, TaskType
from ml_core.tables import read_table

SPEC = ProblemSpec(
    key="k", name="n", description="d", task_type=TaskType.BINARY_CLASSIFICATION, hints=(),
    banding=(Banding(column_hint="age", edges=(25, 35, 50)),),
)


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 200
    frame = pd.DataFrame({
        "id": np.arange(n),
        "age": rng.integers(18, 70, n).astype(float),
        "city": rng.choice(list("abcdefghijkl"), n),
        "note": ["the applicant paid on time"] * n,
        "date": [f"{d % 28 + 1:02d}/02/10" for d in range(n)],
        "income": rng.normal(3000, 400, n),
        "default": rng.choice([1, 2], n, p=[0.7, 0.3]),
        "sex": rng.choice(["f", "m"], n),
        "legacy": np.ones(n),
    })
    frame.loc[[0, 1], "age"] = np.nan
    return frame


MAPPING = ColumnMapping(
    target="default", sensitive=("age", "sex"), exclude=("legacy",), id="id",
)


def test_profile_shape_and_roles():
    frame = _frame()
    result = profile(frame, MAPPING, SPEC)
    assert result["rows"] == 200 and result["n_columns"] == 9
    by_name = {c["name"]: c for c in result["columns"]}
    assert [c["name"] for c in result["columns"]] == list(frame.columns)
    assert {name: c["role"] for name, c in by_name.items()} == {
        "id": "id", "age": "sensitive", "city": "feature", "note": "feature", "date": "feature",
        "income": "feature", "default": "target", "sex": "sensitive", "legacy": "exclude",
    }
    assert {name: c["dtype"] for name, c in by_name.items()} == {
        "id": "numeric", "age": "numeric", "city": "categorical", "note": "text",
        "date": "datetime", "income": "numeric", "default": "numeric", "sex": "categorical",
        "legacy": "numeric",
    }
    assert by_name["age"]["missing_share"] == 0.01
    assert by_name["city"]["n_unique"] == 12


def test_histograms_and_top_values_match_numpy_and_pandas():
    frame = _frame()
    by_name = {c["name"]: c for c in profile(frame, MAPPING, SPEC)["columns"]}
    counts, edges = np.histogram(frame["income"], bins=10)
    assert by_name["income"]["histogram"] == {
        "bins": edges.tolist(), "counts": counts.tolist(),
    }
    assert sum(by_name["age"]["histogram"]["counts"]) == 198  # missing ages left out
    top = by_name["city"]["top_values"]
    assert len(top) == 10
    expected = frame["city"].value_counts()
    assert all(count == expected[value] for value, count in top)
    assert [count for _, count in top] == sorted((c for _, c in top), reverse=True)


def test_target_balance_and_banded_groups():
    frame = _frame()
    result = profile(frame, MAPPING, SPEC)
    assert result["target_balance"] == {
        "1": int((frame["default"] == 1).sum()), "2": int((frame["default"] == 2).sum()),
    }
    ages = frame["age"]
    assert result["groups"]["age"] == {
        "<25": int((ages < 25).sum()),
        "25-34": int(((ages >= 25) & (ages < 35)).sum()),
        "35-49": int(((ages >= 35) & (ages < 50)).sum()),
        "50+": int((ages >= 50).sum()),
        "missing": 2,
    }
    assert sum(result["groups"]["sex"].values()) == 200


def test_profile_is_plain_json_even_with_empty_columns():
    frame, _ = read_table(b"a,b,c\n1,,x\n2,,y\n")
    result = profile(frame, ColumnMapping(target="c"), SPEC)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    empty = result["columns"][1]
    assert empty["missing_share"] == 1.0 and empty["n_unique"] == 0


def test_missing_mapped_columns_are_skipped():
    frame = _frame()
    result = profile(frame, ColumnMapping(target="nope", sensitive=("gone",)), SPEC)
    assert result["target_balance"] == {} and result["groups"] == {}
