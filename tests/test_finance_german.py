"""Credit risk on the real Statlog German credit file, exactly as published.

german.data has no header (columns become column_1..column_21), is space-separated and
codes categories (A91..A95). Target: column_21, 1 = good, 2 = bad (the positive class).
Sensitive: column_9 (personal status and sex), column_13 (age in years).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ml_core.spec import ColumnMapping, PrivacyConfig
from verticals.registry import get_problem

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
GERMAN = SHARED_DATA / "german.data"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not GERMAN.exists(), reason="../shared/data/german.data is absent"),
]

MAPPING = ColumnMapping(target="column_21", sensitive=("column_9", "column_13"),
                        positive_label="2")
PERSONAL_STATUS_CODES = {"A91", "A92", "A93", "A94", "A95"}


@pytest.fixture(scope="module")
def german():
    from ml_core.tables import read_table

    frame, options = read_table(GERMAN)
    return frame, options


def test_reads_as_published(german) -> None:
    frame, options = german
    assert frame.shape == (1000, 21)
    assert options.header is False
    assert list(frame.columns) == [f"column_{i}" for i in range(1, 22)]
    assert frame["column_21"].value_counts().to_dict() == {1: 700, 2: 300}
    assert set(frame["column_9"]) <= PERSONAL_STATUS_CODES


def test_validates_with_the_explicit_mapping(german) -> None:
    from ml_core.validation import validate

    spec = get_problem("finance", "credit_risk").spec
    issues = validate(german[0], MAPPING, spec)
    assert [i.to_dict() for i in issues if i.severity == "error"] == []


def test_age_in_years_gets_the_finance_age_bands(german) -> None:
    # A file whose header names the column "age" gets the vertical's bands.
    from ml_core.fairness import sensitive_frame

    spec = get_problem("finance", "credit_risk").spec
    named = german[0].rename(columns={"column_13": "age"})
    mapping = dataclasses.replace(MAPPING, sensitive=("column_9", "age"))
    groups = sensitive_frame(named, mapping, spec)["age"].value_counts()
    assert set(groups.index) == {"<25", "25-34", "35-49", "50-64", "65+"}
    assert groups.sum() == 1000


@pytest.mark.slow
def test_private_training_on_german_credit(german, tmp_path: Path) -> None:
    from ml_core.pipeline import run_training

    frame, _ = german
    spec = get_problem("finance", "credit_risk").spec
    result = run_training(
        frame=frame,
        mapping=MAPPING,
        spec=spec,
        privacy=PrivacyConfig(enabled=True, target_epsilon=3.0),
        train=dataclasses.replace(spec.train, epochs=6),
        artifact_dir=tmp_path,
    )
    summary = result.to_dict()
    json.dumps(summary)
    assert set(spec.metrics) <= set(result.metrics)
    assert 0.6 <= result.metrics["roc_auc"] <= 1.0
    assert result.baseline["name"] == "logistic_regression"
    assert result.nonprivate_metrics is not None
    assert result.privacy["enabled"] is True
    assert 0 < result.privacy["epsilon"] <= 3.0 * 1.001
    assert result.split["train"] + result.split["val"] + result.split["test"] == 1000

    assert set(result.fairness) == {"column_9", "column_13"}
    status_groups = set(result.fairness["column_9"]["by_group"])
    assert status_groups <= PERSONAL_STATUS_CODES and len(status_groups) >= 3
    # Unnamed numeric column with many ages: banded (quartiles), never one group per age.
    age_groups = set(result.fairness["column_13"]["by_group"])
    assert 2 <= len(age_groups) <= 5
    assert any(group.startswith("<") for group in age_groups)
    assert any(group.endswith("+") for group in age_groups)

    predictions = result.predictions
    assert len(predictions) == result.split["test"]
    # Positive = 2 (bad): about 30 % of the file.
    assert 0.2 <= predictions["y_true"].mean() <= 0.4
    assert Path(result.artifact_path).exists()
