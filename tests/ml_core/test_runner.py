"""The run skeleton (ml_core.runner) on a small test family: stage order, the twin, the
cancel rule, the result and the artifact's common metadata.

The family here is a real plug-in (hooks over a one-weight torch model), not a mock of the
skeleton's parts; the families' own tests and the contract battery train the real ones.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ml_core import runner
from ml_core.spec import ColumnMapping, PrivacyConfig, ProblemSpec, TaskType
from ml_core.trainer import TrainingCancelled


class Progress:
    def __init__(self) -> None:
        self.stages: list[str] = []

    def __call__(self, **update: object) -> None:
        if not self.stages or self.stages[-1] != update["stage"]:
            self.stages.append(str(update["stage"]))


class ConstantHooks(runner.FamilyHooks):
    """Predicts the training mean; 'private' training reports a fixed spend."""

    setup_stage = "encoding"

    def __init__(self, *, judged_baseline: bool = False) -> None:
        self.judged_baseline = judged_baseline

    def prepare(self, inputs: runner.RunInputs) -> pd.DataFrame:
        return inputs.frame

    def baseline(self, inputs: runner.RunInputs, prepared: pd.DataFrame) -> runner.Baseline:
        if self.judged_baseline:
            return runner.Baseline(report=None)
        return runner.Baseline(report={"name": "zero", "metrics": {"mae": 1.0}}, detail=0.0)

    def fit(self, inputs: runner.RunInputs, prepared: pd.DataFrame,
            call: runner.FitCall) -> runner.Fitted:
        if call.should_stop is not None and call.should_stop():
            raise TrainingCancelled(privacy={"enabled": call.privacy is not None, "partial": 1})
        call.progress(stage=call.stage, epoch=1, total_epochs=1, loss=0.0, val_metric=None,
                      epsilon=None)
        model = nn.Linear(1, 1)
        with torch.no_grad():
            model.weight.zero_()
            model.bias.fill_(float(prepared["y"].mean()) + (2.0 if call.twin else 0.0))
        privacy = ({"enabled": True, "epsilon": 1.5, "delta": 1e-5} if call.privacy is not None
                   else {"enabled": False, "epsilon": None, "delta": None})
        return runner.Fitted(model=model.eval(), privacy=privacy, history=[{"epoch": 1}],
                             best_epoch=1, device="cpu",
                             trained=call.checkpoint_path)

    def evaluate(self, inputs: runner.RunInputs, prepared: pd.DataFrame,
                 fitted: runner.Fitted) -> runner.Evaluation:
        with torch.no_grad():
            predicted = fitted.model(torch.zeros(len(prepared), 1))[:, 0].numpy()
        mae = float(np.abs(predicted - prepared["y"].to_numpy()).mean())
        return runner.Evaluation(metrics={"mae": mae}, fairness={"g": {"passed": mae < 1}},
                                 detail=predicted,
                                 baseline={"name": "judged", "metrics": {"mae": 2 * mae}})

    def split(self, inputs: runner.RunInputs, prepared: pd.DataFrame) -> dict:
        return {"method": "none", "test": len(prepared)}

    def save(self, inputs: runner.RunInputs, prepared: pd.DataFrame, model: runner.Fitted,
             evaluation: runner.Evaluation, *, directory: Path,
             metadata: dict) -> runner.Saved:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "metadata.json").write_text(json.dumps(runner.json_ready(metadata)))
        return runner.Saved(path=str(directory), sha256="0" * 64)

    def predictions(self, inputs: runner.RunInputs, prepared: pd.DataFrame,
                    baseline: runner.Baseline, evaluation: runner.Evaluation) -> pd.DataFrame:
        return pd.DataFrame({"row_id": prepared.index, "y_pred": evaluation.detail})

    def charts(self, inputs: runner.RunInputs, prepared: pd.DataFrame,
               baseline: runner.Baseline, model: runner.Fitted,
               evaluation: runner.Evaluation) -> dict:
        return {"kind": "none"}

    def notes(self, inputs: runner.RunInputs, prepared: pd.DataFrame, model: runner.Fitted,
              twin: runner.Fitted | None, evaluation: runner.Evaluation) -> list[str]:
        return ["twin" if twin is not None else "no twin"]


SPEC = ProblemSpec(key="constant", name="Constant", description="test family",
                   task_type=TaskType.BINARY_CLASSIFICATION, hints=(), metrics=("mae",),
                   primary_metric="mae", baseline="zero", model_family="constant")
FRAME = pd.DataFrame({"y": [0.0, 1.0, 1.0, 0.0]}, index=[3, 3, 5, 7])  # duplicate index
MAPPING = ColumnMapping(target="y")


def run(hooks: runner.FamilyHooks, tmp_path: Path, *, private: bool, **extra: object
        ) -> tuple[runner.TrainingResult, Progress]:
    progress = Progress()
    result = runner.run_family(
        hooks, frame=FRAME, mapping=MAPPING, spec=SPEC,
        privacy=dataclasses.replace(PrivacyConfig(), enabled=private),
        artifact_dir=tmp_path / "artifact", progress=progress, **extra)
    return result, progress


def test_private_run_reports_every_stage_in_order_and_trains_a_twin(tmp_path: Path) -> None:
    result, progress = run(ConstantHooks(), tmp_path, private=True,
                           checkpoint_dir=tmp_path / "checkpoints")
    assert progress.stages == ["preparing", "baseline", "encoding", "training",
                               "training_twin", "auditing", "saving"]
    assert result.metrics == {"mae": 0.5}
    assert result.nonprivate_metrics == {"mae": 2.0}  # the twin's own evaluation
    assert result.nonprivate_fairness == {"g": {"passed": False}}
    assert result.privacy["epsilon"] == 1.5 and result.fairness_passed is True
    assert result.baseline == {"name": "zero", "metrics": {"mae": 1.0}}
    assert result.notes == ["twin"] and result.charts == {"kind": "none"}
    # resolve_inputs: a duplicated index falls back to positions.
    assert result.predictions["row_id"].tolist() == [0, 1, 2, 3]
    metadata = json.loads((tmp_path / "artifact" / "metadata.json").read_text())
    assert metadata["epsilon"] == 1.5 and metadata["delta"] == 1e-5
    assert {"spec_key", "task_type", "seed", "mapping", "privacy", "best_epoch",
            "versions"} <= set(metadata)
    assert metadata["versions"] == result.versions


def test_each_training_stage_gets_its_own_checkpoint(tmp_path: Path) -> None:
    seen: list[Path | None] = []

    class Recording(ConstantHooks):
        def fit(self, inputs: runner.RunInputs, prepared: pd.DataFrame,
                call: runner.FitCall) -> runner.Fitted:
            seen.append(call.checkpoint_path)
            return super().fit(inputs, prepared, call)

    run(Recording(), tmp_path, private=True, checkpoint_dir=tmp_path / "checkpoints")
    assert seen == [tmp_path / "checkpoints" / "training.pt",
                    tmp_path / "checkpoints" / "training_twin.pt"]


def test_non_private_run_has_no_twin(tmp_path: Path) -> None:
    result, progress = run(ConstantHooks(), tmp_path, private=False)
    assert "training_twin" not in progress.stages
    assert result.nonprivate_metrics is None and result.nonprivate_fairness is None
    assert result.notes == ["no twin"] and result.privacy["enabled"] is False


def test_a_baseline_judged_through_the_model_comes_with_its_evaluation(tmp_path: Path) -> None:
    result, _ = run(ConstantHooks(judged_baseline=True), tmp_path, private=False)
    assert result.baseline == {"name": "judged", "metrics": {"mae": 1.0}}


class CancelledAfter(ConstantHooks):
    """Asks for a cancel once the ``after``-th training has ended (1: the model, 2: the
    twin); the skeleton's stage boundaries and the family's own loops then honour it."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.trained, self.stop = after, 0, False

    def fit(self, inputs: runner.RunInputs, prepared: pd.DataFrame,
            call: runner.FitCall) -> runner.Fitted:
        fitted = super().fit(inputs, prepared, call)
        self.trained += 1
        self.stop = self.trained >= self.after
        return fitted


def test_a_cancelled_twin_reports_the_private_models_whole_spend(tmp_path: Path) -> None:
    hooks = CancelledAfter(1)  # the model trains; the twin is cancelled

    with pytest.raises(TrainingCancelled) as cancelled:
        run(hooks, tmp_path, private=True, should_stop=lambda: hooks.stop)
    assert hooks.trained == 1
    assert cancelled.value.privacy == {"enabled": True, "epsilon": 1.5, "delta": 1e-5}
    assert not (tmp_path / "artifact").exists()


def test_a_cancel_after_training_reports_the_private_models_whole_spend(tmp_path: Path) -> None:
    hooks = CancelledAfter(2)  # both trained; the cancel lands before the audits

    with pytest.raises(TrainingCancelled) as cancelled:
        run(hooks, tmp_path, private=True, should_stop=lambda: hooks.stop)
    assert hooks.trained == 2
    # Not an empty report (which the ledger would have to charge as the whole target).
    assert cancelled.value.privacy == {"enabled": True, "epsilon": 1.5, "delta": 1e-5}
    assert not (tmp_path / "artifact").exists()


def test_a_cancelled_model_reports_what_its_training_spent(tmp_path: Path) -> None:
    class CancelledInTraining(CancelledAfter):
        def setup(self, inputs: runner.RunInputs, prepared: pd.DataFrame) -> pd.DataFrame:
            self.stop = True  # asked next by the model's training
            return prepared

    hooks = CancelledInTraining(1)
    with pytest.raises(TrainingCancelled) as cancelled:
        run(hooks, tmp_path, private=True, should_stop=lambda: hooks.stop)
    assert cancelled.value.privacy == {"enabled": True, "partial": 1}
