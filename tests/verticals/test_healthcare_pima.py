"""Readmission-style risk on the real Pima Indians Diabetes file (skipped without it).

The file as published: CRLF, no final newline, header with ``Target`` (1 = diabetes),
zeros standing for missing values in several clinical columns. It goes through the same
path as an upload: ``read_table`` -> suggested mapping -> ``run_training``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PIMA = SHARED_DATA / "pima-indians-diabetes.csv"
# On 768 nearly linear rows an MLP can only match logistic regression: measured over seeds
# 0-3 with this configuration, the difference in test ROC AUC was -0.007 to +0.006.
REAL_FILE_TRAIN = {"learning_rate": 1e-3, "hidden_sizes": (16,), "patience": 10, "epochs": 60}

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.slow,
    pytest.mark.skipif(not PIMA.is_file(), reason="../shared/data is not available"),
]


@pytest.fixture(scope="module")
def pima():
    from ml_core.tables import read_table

    frame, _ = read_table(PIMA)
    return frame


def test_pima_reads_and_maps(pima) -> None:
    from ml_core.validation import suggest_mapping, validate
    from verticals.healthcare.vertical import READMISSION_RISK

    assert pima.shape == (768, 9)
    mapping = suggest_mapping(pima, READMISSION_RISK)
    assert mapping.target == "Target"
    assert mapping.sensitive == ("Age",)
    errors = [i for i in validate(pima, mapping, READMISSION_RISK) if i.severity == "error"]
    assert errors == []


def test_pima_model_beats_logistic_regression(pima, tmp_path) -> None:
    from ml_core.pipeline import run_training
    from ml_core.validation import suggest_mapping
    from verticals.healthcare.vertical import READMISSION_RISK

    spec = READMISSION_RISK
    # Age is audited and, as a clinical risk factor, also a feature (sensitive columns are
    # not features unless listed). Seeds 0-2 measured: MLP 0.886/0.817/0.808 vs logistic
    # regression 0.885/0.816/0.793 ROC AUC.
    mapping = suggest_mapping(pima, spec)
    mapping = dataclasses.replace(
        mapping, features=tuple(c for c in pima.columns if c != mapping.target))
    train = dataclasses.replace(spec.train, **REAL_FILE_TRAIN)
    result = run_training(frame=pima, mapping=mapping, spec=spec, train=train,
                          privacy=dataclasses.replace(spec.privacy, enabled=False),
                          artifact_dir=tmp_path)
    model, baseline = result.metrics["roc_auc"], result.baseline["metrics"]["roc_auc"]
    assert model > baseline, (model, baseline)
    assert model > 0.8
    assert result.metrics["brier"] <= result.baseline["metrics"]["brier"] + 0.02
    bands = set(result.fairness["Age"]["by_group"])
    assert bands <= {"<40", "40-64", "65-79", "80+"} and "<40" in bands


def test_pima_private_model_stays_useful(pima, tmp_path) -> None:
    from ml_core.pipeline import run_training
    from ml_core.validation import suggest_mapping
    from verticals.healthcare.vertical import READMISSION_RISK

    spec = READMISSION_RISK  # privacy on by default, the spec's own training settings
    result = run_training(frame=pima, mapping=suggest_mapping(pima, spec), spec=spec,
                          artifact_dir=tmp_path)
    assert result.privacy["enabled"] and result.privacy["epsilon"] <= spec.privacy.target_epsilon
    assert result.metrics["roc_auc"] > 0.8
