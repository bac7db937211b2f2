"""run_training end to end: stages, result shape, predictions, fairness, reproducibility."""

from __future__ import annotations

import json

import pytest

from ml_core import fairness
from ml_core.pipeline import TrainingCancelled, TrainingResult, run_training
from ml_core.spec import PrivacyConfig

STAGES = ["preparing", "baseline", "training", "training_twin", "auditing", "saving"]


def test_stages_are_reported_in_order(private_run, spec, recorder):
    _, recorder = private_run
    assert recorder.stages() == STAGES
    training = [call for call in recorder.calls if call["stage"] == "training"]
    assert [call["epoch"] for call in training] == list(range(1, spec.train.epochs + 1))
    assert all(call["epsilon"] > 0 for call in training)


def test_result_is_json_ready(private_run):
    result, _ = private_run
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert "predictions" not in data
    assert json.loads(text)["split"] == {**result.split}
    assert set(data) == {
        "metrics", "baseline", "nonprivate_metrics", "privacy", "fairness",
        "nonprivate_fairness", "fairness_passed", "split", "history", "device", "seed",
        "artifact_path", "artifact_sha256", "versions", "task_type", "charts", "notes",
        "references",
    }
    assert set(data["metrics"]) == {"roc_auc", "pr_auc", "accuracy", "f1", "brier", "ks"}
    assert data["baseline"]["name"] == "logistic_regression"
    assert data["split"]["method"] == "stratified"
    assert data["device"] == "cpu"


def test_private_model_learns_the_planted_signal(private_run):
    result, _ = private_run
    assert result.metrics["roc_auc"] > 0.6
    assert result.nonprivate_metrics["roc_auc"] > 0.6
    assert result.baseline["metrics"]["roc_auc"] > 0.6


def test_predictions_carry_row_ids_and_banded_groups(private_run, frame):
    result, _ = private_run
    table = result.predictions
    assert list(table.columns) == ["row_id", "y_true", "y_score", "y_pred", "sex", "age"]
    assert len(table) == result.split["test"]
    assert set(table["row_id"]) <= set(frame.index)
    truth = (frame.loc[table["row_id"], "default"] == "yes").astype(int).to_numpy()
    assert (table["y_true"].to_numpy() == truth).all()
    # One threshold (chosen on validation) separates every decision.
    assert table.loc[table["y_pred"] == 1, "y_score"].min() > table.loc[
        table["y_pred"] == 0, "y_score"].max()
    assert set(table["age"]) <= {"<25", "25-34", "35-49", "50+"}
    assert set(table["sex"]) <= {"female", "male"}


def test_fairness_reports_both_models_from_the_predictions(private_run, spec):
    result, _ = private_run
    table = result.predictions
    expected = fairness.audit(
        y_true=table["y_true"].to_numpy(), y_pred=table["y_pred"].to_numpy(),
        sensitive=table[["sex", "age"]], policy=spec.fairness,
    )
    assert result.fairness == expected
    assert result.fairness_passed == fairness.passed(expected)
    assert set(result.nonprivate_fairness) == {"sex", "age"}


def test_same_seed_same_result(private_run, frame, spec, mapping, tmp_path):
    first, _ = private_run
    second = run_training(frame=frame, mapping=mapping, spec=spec, artifact_dir=tmp_path)
    assert second.metrics == first.metrics
    assert second.nonprivate_metrics == first.nonprivate_metrics
    assert second.privacy == first.privacy
    assert second.history == first.history
    assert second.artifact_sha256 == first.artifact_sha256
    assert second.predictions.equals(first.predictions)


def test_non_private_run_trains_one_model(frame, spec, mapping, recorder, tmp_path):
    result = run_training(frame=frame, mapping=mapping, spec=spec,
                          privacy=PrivacyConfig(enabled=False), artifact_dir=tmp_path,
                          progress=recorder)
    assert isinstance(result, TrainingResult)
    assert result.privacy["enabled"] is False and result.privacy["epsilon"] is None
    assert result.nonprivate_metrics is None and result.nonprivate_fairness is None
    assert "training_twin" not in recorder.stages()
    assert all(entry["epsilon"] is None for entry in result.history)
    json.dumps(result.to_dict(), allow_nan=False)


def test_cancel_during_the_twin_reports_the_private_models_budget(frame, spec, mapping,
                                                                 tmp_path):
    stages: list[str] = []

    def cancel_in_twin() -> bool:
        return bool(stages) and stages[-1] == "training_twin"

    def progress(**update) -> None:
        stages.append(update["stage"])

    with pytest.raises(TrainingCancelled) as caught:
        run_training(frame=frame, mapping=mapping, spec=spec, privacy=spec.privacy,
                     artifact_dir=tmp_path, progress=progress, should_stop=cancel_in_twin)
    spent = caught.value.privacy
    assert spent["steps"] == spent["planned_steps"] > 0
    assert spent["epsilon"] <= spec.privacy.target_epsilon
    assert not (tmp_path / "model.pt").exists()
