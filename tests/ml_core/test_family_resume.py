"""Resuming the non-tabular families from their checkpoints: a run that dies in the middle
of a training stage (an exception from the progress sink at epoch k, as a killed worker
leaves it: the checkpoint of epoch k - 1 on disk), run again with the same checkpoint
directory, ends exactly as an uninterrupted run: the same weights (``torch.equal``),
metrics, history and privacy (epsilon from the restored accountant, exactly the planned
steps). Each family trains privately, with its non-private twin, through
``ml_core.pipeline.run_training``, as the worker calls it; the text family through its
runner, with the text tests' tiny encoder (fast)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from ml_core.artifacts import WEIGHTS_FILE
from ml_core.checkpoints import checkpoint_epochs
from ml_core.families import get_family, text
from ml_core.pipeline import TrainingResult, run_training
from ml_core.privacy import epsilon_for
from ml_core.spec import ColumnMapping, ProblemSpec
from tests.ml_core.test_family_text import MAPPING as TEXT_MAPPING
from tests.ml_core.test_family_text import SPEC as TEXT_SPEC
from tests.ml_core.test_family_text import TINY
from tests.ml_core.test_family_text import notes as text_notes
from verticals.education.demo_data import tutor_responses
from verticals.education.vertical import KNOWLEDGE_TRACING, RESPONSE_MAPPING
from verticals.manufacturing.demo_data import run_to_failure
from verticals.manufacturing.vertical import REMAINING_USEFUL_LIFE, RUL_SAMPLE_MAPPING
from verticals.retail.demo_data import shopper_interactions, weekly_sales
from verticals.retail.vertical import (
    DEMAND_FORECAST,
    FORECAST_SAMPLE_MAPPING,
    RECOMMENDATION,
    RECOMMENDATION_SAMPLE_MAPPING,
)

EPOCHS = 4


@dataclass(frozen=True)
class Case:
    spec: ProblemSpec
    mapping: ColumnMapping
    frame: pd.DataFrame
    crash_stage: str  # the stage, and its epoch, whose progress report "kills the worker"
    crash_epoch: int
    train_changes: tuple = ()

    @property
    def train(self):
        # patience = epochs: every planned step is taken, in both runs.
        return dataclasses.replace(self.spec.train, epochs=EPOCHS, patience=EPOCHS,
                                   **dict(self.train_changes))

    @property
    def privacy(self):
        return dataclasses.replace(self.spec.privacy, enabled=True, target_epsilon=3.0)


CASES = {
    "forecaster": lambda: Case(DEMAND_FORECAST, FORECAST_SAMPLE_MAPPING, weekly_sales(600, 3),
                               "training", 3, (("horizon", 6),)),
    "recommender": lambda: Case(RECOMMENDATION, RECOMMENDATION_SAMPLE_MAPPING,
                                shopper_interactions(3000, 1), "training", 2),
    # Dies in the twin: the private model's finished checkpoint is reused, not retrained.
    "sequence_regressor": lambda: Case(REMAINING_USEFUL_LIFE, RUL_SAMPLE_MAPPING,
                                       run_to_failure(1500, 11), "training_twin", 2),
    "knowledge_tracing": lambda: Case(KNOWLEDGE_TRACING, RESPONSE_MAPPING,
                                      tutor_responses(3000, 0), "training", 3),
}


class WorkerDied(Exception):
    """What the test raises from the progress sink: the attempt ends there, mid-stage."""


class Progress:
    """A ProgressSink keeping the epochs reported; raises WorkerDied at ``crash``."""

    def __init__(self, crash: tuple[str, int] | None = None) -> None:
        self.crash, self.epochs = crash, []

    def __call__(self, *, stage: str, epoch: int, **_) -> None:
        if epoch:
            self.epochs.append((stage, epoch))
        if (stage, epoch) == self.crash:
            raise WorkerDied(f"killed after reporting {stage} epoch {epoch}")


def train(case: Case, directory: Path, *, checkpoints: Path | None = None,
          progress: Progress | None = None) -> TrainingResult:
    return run_training(frame=case.frame, mapping=case.mapping, spec=case.spec,
                        privacy=case.privacy, train=case.train, artifact_dir=directory,
                        checkpoint_dir=checkpoints, progress=progress)


def comparable(result: TrainingResult) -> dict:
    return {key: value for key, value in result.to_dict().items() if key != "artifact_path"}


@pytest.mark.parametrize("family", list(CASES))
def test_a_resumed_family_run_equals_an_uninterrupted_one(family, tmp_path):
    case = CASES[family]()
    assert case.spec.model_family == family
    reference = train(case, tmp_path / "reference")

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(WorkerDied):
        train(case, tmp_path / "first", checkpoints=checkpoints,
              progress=Progress(crash=(case.crash_stage, case.crash_epoch)))
    # The crash came before the epoch's checkpoint: the one before it is on disk.
    finished = {"training": EPOCHS} if case.crash_stage == "training_twin" else {}
    assert checkpoint_epochs(checkpoints) == {**finished,
                                              case.crash_stage: case.crash_epoch - 1}

    progress = Progress()
    resumed = train(case, tmp_path / "second", checkpoints=checkpoints, progress=progress)
    # Only the epochs after the checkpoint ran again (a finished stage not at all).
    rerun = [(case.crash_stage, epoch) for epoch in range(case.crash_epoch, EPOCHS + 1)]
    if case.crash_stage == "training":
        rerun += [("training_twin", epoch) for epoch in range(1, EPOCHS + 1)]
    assert progress.epochs == rerun

    assert comparable(resumed) == comparable(reference)  # metrics, history, privacy, ...
    ours = torch.load(Path(resumed.artifact_path) / WEIGHTS_FILE, weights_only=True)
    theirs = torch.load(Path(reference.artifact_path) / WEIGHTS_FILE, weights_only=True)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    privacy = resumed.privacy
    assert privacy["steps"] == privacy["planned_steps"]  # no step lost or counted twice
    # A run with DP preprocessing reports one composed figure; its SGD stage is the steps'.
    sgd = next((stage for stage in privacy.get("stages", []) if stage["stage"] == "sgd"),
               privacy)
    assert sgd["epsilon"] == epsilon_for(
        noise_multiplier=privacy["noise_multiplier"], sample_rate=privacy["sample_rate"],
        steps=privacy["steps"], delta=sgd["delta"])
    assert [entry["epsilon"] for entry in resumed.history] == \
        [entry["epsilon"] for entry in reference.history]


TEXT_CRASHES = {"private_head": ("training", 2), "twin": ("training_twin", 3)}


def text_run(directory: Path, *, checkpoints: Path | None = None,
             progress: Progress | None = None) -> TrainingResult:
    # The tiny random encoder of the text tests (fast); text.run as run_training calls it.
    return text.run(frame=text_notes(), mapping=TEXT_MAPPING, spec=TEXT_SPEC,
                    train=dataclasses.replace(TEXT_SPEC.train, epochs=EPOCHS, patience=EPOCHS),
                    artifact_dir=directory, checkpoint_dir=checkpoints, progress=progress,
                    encoder=TINY)


def without_timings(result: TrainingResult) -> dict:
    # The notes say how many seconds encoding and training took; nothing else may differ.
    found = comparable(result)
    found["notes"] = [re.sub(r"\d+(\.\d+)? s\b", "_ s", note) for note in found["notes"]]
    return found


@pytest.mark.parametrize("crash", list(TEXT_CRASHES))
def test_a_resumed_text_run_equals_an_uninterrupted_one(crash, tmp_path):
    # Private: DP-SGD on the head over the frozen embeddings ("training"), then the
    # non-private twin fine-tuning the top layer and head with dropout ("training_twin").
    stage, epoch = TEXT_CRASHES[crash]
    assert TEXT_SPEC.privacy.enabled
    reference = text_run(tmp_path / "reference")

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(WorkerDied):
        text_run(tmp_path / "first", checkpoints=checkpoints, progress=Progress((stage, epoch)))
    finished = {"training": EPOCHS} if stage == "training_twin" else {}
    assert checkpoint_epochs(checkpoints) == {**finished, stage: epoch - 1}

    # A new worker process: the frozen encoder's states are computed again, not read back.
    text._STATE_CACHE.clear()
    progress = Progress()
    resumed = text_run(tmp_path / "second", checkpoints=checkpoints, progress=progress)
    rerun = [(stage, e) for e in range(epoch, EPOCHS + 1)]
    if stage == "training":
        rerun += [("training_twin", e) for e in range(1, EPOCHS + 1)]
    assert progress.epochs == rerun

    assert without_timings(resumed) == without_timings(reference)
    ours = torch.load(Path(resumed.artifact_path) / text.WEIGHTS_FILE, weights_only=True)
    theirs = torch.load(Path(reference.artifact_path) / text.WEIGHTS_FILE, weights_only=True)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    privacy = resumed.privacy
    assert privacy["steps"] == privacy["planned_steps"]
    # A run with DP preprocessing reports one composed figure; its SGD stage is the steps'.
    sgd = next((stage for stage in privacy.get("stages", []) if stage["stage"] == "sgd"),
               privacy)
    assert sgd["epsilon"] == epsilon_for(
        noise_multiplier=privacy["noise_multiplier"], sample_rate=privacy["sample_rate"],
        steps=privacy["steps"], delta=sgd["delta"])


def test_a_text_checkpoint_of_other_inputs_is_not_resumed(tmp_path):
    # Other token ids (one note changed): the states differ, so the checkpoint is ignored.
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(WorkerDied):
        text_run(tmp_path / "first", checkpoints=checkpoints,
                 progress=Progress(("training", 2)))
    frame = text_notes()
    frame.iloc[0, frame.columns.get_loc("note")] = "patient with a different note"
    progress = Progress()
    text.run(frame=frame, mapping=TEXT_MAPPING, spec=TEXT_SPEC,
             train=dataclasses.replace(TEXT_SPEC.train, epochs=EPOCHS, patience=EPOCHS),
             artifact_dir=tmp_path / "second", checkpoint_dir=checkpoints, progress=progress,
             encoder=TINY)
    assert progress.epochs[:EPOCHS] == [("training", e) for e in range(1, EPOCHS + 1)]


def test_every_family_runner_takes_a_checkpoint_dir():
    # run_training hands every family its checkpoint folder: a family added without one
    # would fail here, not silently retrain from the first epoch after a crash.
    from verticals.registry import all_problems

    families = {problem.spec.model_family for _, problem in all_problems()}
    assert families
    for family in families:
        assert "checkpoint_dir" in inspect.signature(get_family(family).run).parameters, family
        assert get_family(family).supports.resume, family
