"""Failure prediction: the imbalanced-classification pieces, the sample data, and the real
AI4I 2020 file (skipped when ../shared/data is absent)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fairlearn.metrics import MetricFrame, true_positive_rate
from sklearn.metrics import average_precision_score, precision_recall_curve

from ml_core.data import encode_and_split
from ml_core.metrics import binary_metrics, positive_class_weight, recall_at_precision
from ml_core.trainer import make_loss, resolve_device
from verticals.manufacturing.demo_data import FAILURE_MODES, machine_readings
from verticals.manufacturing.vertical import FAILURE_PREDICTION, FAILURE_SAMPLE_MAPPING

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
AI4I = SHARED_DATA / "ai4i2020.csv"
SPEC = FAILURE_PREDICTION
LEAKING = {"TWF", "HDF", "PWF", "OSF", "RNF"}


def test_recall_at_precision_matches_a_brute_force_scan() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.05).astype(int)
    score = np.round(0.4 * y + rng.random(2000) * 0.7, 2)
    best = 0.0
    for threshold in np.unique(score):
        decided = score >= threshold
        precision = y[decided].mean()
        if precision >= 0.9:
            best = max(best, y[decided].sum() / y.sum())
    assert recall_at_precision(y, score, 0.9) == pytest.approx(best)
    assert recall_at_precision(y, 1 - score, 0.9) == 0.0
    metrics = binary_metrics(y, score, metrics=("pr_auc", "recall_at_90_precision"))
    assert list(metrics) == ["pr_auc", "recall_at_90_precision"]
    assert metrics["pr_auc"] == average_precision_score(y, score)
    with pytest.raises(ValueError, match="unknown"):
        binary_metrics(y, score, metrics=("nonsense",))


def test_class_weight_is_negatives_over_positives_in_the_loss() -> None:
    frame = machine_readings(1000, 0)
    train = SPEC.train
    split = encode_and_split(frame, FAILURE_SAMPLE_MAPPING, train)
    weight = positive_class_weight(split.y_train)
    assert weight == pytest.approx((split.y_train == 0).sum() / (split.y_train == 1).sum())
    loss = make_loss(split, train, device=resolve_device("cpu"))
    logits, labels = torch.tensor([0.3, -1.0]), torch.tensor([1.0, 0.0])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels,
                                                                 reduction="none")
    # pos_weight scales the positive row's term; the mean is still over rows (Opacus "mean").
    expected = (weight * plain[0] + plain[1]) / 2
    assert float(loss(logits, labels)) == pytest.approx(float(expected), rel=1e-6)
    unweighted = make_loss(split, dataclasses.replace(train, class_weighting=False),
                           device=resolve_device("cpu"))
    assert float(unweighted(logits, labels)) == pytest.approx(float(plain.mean()), rel=1e-6)


def test_sample_failures_follow_the_documented_rules() -> None:
    frame = machine_readings(5000, 3)
    modes = frame[list(FAILURE_MODES)].to_numpy().any(axis=1)
    assert (frame["Machine failure"].to_numpy() == modes).all()
    assert 0.04 < frame["Machine failure"].mean() < 0.10
    power = frame["Torque [Nm]"] * frame["Rotational speed [rpm]"] * 2 * np.pi / 60
    # Rounded columns can sit on the boundary; away from it the rule decides.
    clear = (power < 3400) | ((power > 3600) & (power < 8900)) | (power > 9100)
    assert (frame.loc[clear, "PWF"] == ((power < 3500) | (power > 9000))[clear]).all()


@pytest.mark.slow
def test_sample_run_reports_the_problem_metrics_and_an_operational_audit(tmp_path) -> None:
    from ml_core.pipeline import run_training

    result = run_training(frame=machine_readings(2000, 5), mapping=FAILURE_SAMPLE_MAPPING,
                          spec=SPEC, train=dataclasses.replace(SPEC.train, epochs=10),
                          artifact_dir=tmp_path)
    assert list(result.metrics) == list(SPEC.metrics)
    assert list(result.baseline["metrics"]) == list(SPEC.metrics)
    assert result.privacy["enabled"] is False  # off by default for sensor data
    assert result.fairness["Type"]["kind"] == "operational"
    assert set(result.fairness["Type"]["by_group"]) == {"L", "M", "H"}
    charts = result.charts
    matrix = np.array(charts["confusion_matrix"]["matrix"])
    assert matrix.sum() == len(result.predictions)
    assert matrix[1].sum() == result.predictions["y_true"].sum()
    curve = charts["pr_curve"]
    assert curve["chance"] == pytest.approx(result.predictions["y_true"].mean())
    assert len(curve["precision"]) == len(curve["recall"]) <= 200
    # Without privacy the rare positives are not weighted (trainer.nonprivate_schedule).
    assert any("not weighted" in note for note in result.notes)
    json.dumps(result.to_dict())


# --- the real file ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ai4i():
    from ml_core.tables import read_table

    return read_table(AI4I)[0]


@pytest.mark.shared_data
@pytest.mark.skipif(not AI4I.exists(), reason="../shared/data/ai4i2020.csv is absent")
def test_hints_map_the_real_file_and_exclude_the_leaking_columns(ai4i) -> None:
    from ml_core.validation import suggest_mapping, validate

    assert ai4i.shape == (10000, 14)
    mapping = suggest_mapping(ai4i, SPEC)
    assert mapping.target == "Machine_failure"
    assert mapping.id == "UDI"
    assert mapping.sensitive == ("Type",)
    assert set(mapping.exclude) == LEAKING | {"Product ID"}
    assert [i.to_dict() for i in validate(ai4i, mapping, SPEC) if i.severity == "error"] == []


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not AI4I.exists(), reason="../shared/data/ai4i2020.csv is absent")
def test_real_file_beats_logistic_regression_on_pr_auc(ai4i, tmp_path) -> None:
    from ml_core.pipeline import run_training
    from ml_core.validation import suggest_mapping

    mapping = suggest_mapping(ai4i, SPEC)
    result = run_training(frame=ai4i, mapping=mapping, spec=SPEC,
                          train=dataclasses.replace(SPEC.train, epochs=30),
                          artifact_dir=tmp_path)
    metadata = json.loads((Path(result.artifact_path) / "metadata.json").read_text())
    assert not LEAKING & set(metadata["feature_columns"])
    assert "Type" not in metadata["feature_columns"]
    assert result.metrics["pr_auc"] > result.baseline["metrics"]["pr_auc"]
    assert result.metrics["pr_auc"] > 0.5  # chance level is the failure rate, 0.034
    predictions = result.predictions
    assert predictions["y_true"].mean() == pytest.approx(0.0339, abs=0.005)  # stratified
    report = result.fairness["Type"]
    assert report["kind"] == "operational"
    reference = MetricFrame(metrics=true_positive_rate, y_true=predictions["y_true"],
                            y_pred=predictions["y_pred"],
                            sensitive_features=predictions["Type"]).by_group
    for tier, group in report["by_group"].items():
        assert group["tpr"] == pytest.approx(reference[tier], abs=1e-12)
    precision, recall, _ = precision_recall_curve(predictions["y_true"], predictions["y_score"])
    reachable = recall[:-1][precision[:-1] >= 0.9]
    assert result.metrics["recall_at_90_precision"] == pytest.approx(
        reachable.max() if len(reachable) else 0.0)
