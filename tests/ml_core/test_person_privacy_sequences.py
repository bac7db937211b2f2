"""Person-level privacy for the sequence families: a unit with many windows is sampled,
bounded and accounted as ONE unit, and the run's epsilon is one composition of its DP
preprocessing and its SGD steps, equal to an independent dp-accounting computation."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from unittest import mock

import dp_accounting
import numpy as np
import pandas as pd
import pytest
import torch
from dp_accounting import pld

from ml_core import training_loop
from ml_core.families import sequence_regression as rul
from ml_core.sampling import PersonBatchSampler, PersonExamples
from ml_core.spec import ColumnMapping, PrivacyConfig
from tests.support.person_accounting import assert_composed_epsilon
from verticals.manufacturing.vertical import REMAINING_USEFUL_LIFE

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

MAPPING = ColumnMapping(target="", roles=(("unit", "machine"), ("cycle", "cycle")))
TRAIN = dataclasses.replace(REMAINING_USEFUL_LIFE.train, epochs=2, batch_size=32, window=5)


@contextlib.contextmanager
def private_plans(captured: list) -> Iterator[None]:
    """Within this block, every private plan the one training loop starts is appended to
    ``captured`` (what the family trained on, as the loop saw it)."""
    real_start = training_loop.start

    def observed(plan):  # noqa: ANN001, ANN202
        started = real_start(plan)
        if plan.private:
            captured.append(plan)
        return started

    with mock.patch.object(training_loop, "start", observed):
        yield


def run_privately(run, **arguments) -> tuple:  # noqa: ANN001
    """``run(**arguments)`` at epsilon 3 per unit: ``(result, the private loop's plan)``."""
    captured: list = []
    with private_plans(captured):
        result = run(privacy=PrivacyConfig(enabled=True, target_epsilon=3.0), **arguments)
    return result, captured[0]


def machines(n_machines: int = 240, seed: int = 0) -> pd.DataFrame:
    """Machines of 8-20 cycles each (several windows per machine); two sensors drift as
    the machine wears, around levels a coarse grid cannot resolve (642 +- 0.5)."""
    rng = np.random.default_rng(seed)
    frames = []
    for m in range(n_machines):
        life = int(rng.integers(8, 21))
        cycles = np.arange(1, life + 1)
        wear = cycles / life
        frames.append(pd.DataFrame({
            "machine": f"m{m:03d}", "cycle": cycles,
            "temperature": 642.0 + 0.8 * wear + rng.normal(0, 0.1, life),
            "vibration": 0.02 + 0.05 * wear + rng.normal(0, 0.005, life),
        }))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def private_rul(tmp_path_factory):
    frame = machines()
    result, plan = run_privately(rul.run, frame=frame, mapping=MAPPING,
                                 spec=REMAINING_USEFUL_LIFE, train=TRAIN,
                                 artifact_dir=tmp_path_factory.mktemp("rul"))
    return frame, result, plan


def test_machines_not_windows_are_sampled_one_window_each(private_rul):
    frame, result, plan = private_rul
    dataset = plan.dataset
    assert isinstance(dataset, PersonExamples)
    assert len(dataset) == result.split["train_units"] < result.split["train"]
    # A drawn machine brings one of its own windows; over steps, each of them.
    units = np.array([rows for rows in dataset.rows], dtype=object)
    largest = int(np.argmax(dataset.rows_per_person))
    drawn = {int(dataset.rows_drawn(salt * len(dataset) + largest)[0]) for salt in range(300)}
    assert drawn == set(units[largest].tolist())
    keys = PersonBatchSampler(num_samples=len(dataset), sample_rate=0.5, seed=1).draw()
    x, y = dataset.__getitems__(keys.tolist())
    assert len(x) == len(keys) == len(set(keys % len(dataset)))
    first = int(dataset.rows_drawn(int(keys[0]))[0])
    torch.testing.assert_close(x[0], dataset.tensors[0][first])


def test_the_report_states_the_machine_the_bound_and_the_stages(private_rul):
    _, result, _ = private_rul
    privacy = result.privacy
    assert privacy["unit"]["name"] == "machine" and privacy["unit"]["column"] == "machine"
    assert privacy["contribution_bound"]["max_rows_per_person"] == 1
    assert [stage["stage"] for stage in privacy["stages"]] == ["preprocessing", "sgd"]
    # Nothing but the weights: each machine's channels scale by its own first readings.
    released = privacy["stages"][0]["released"]["estimated_privately"]
    assert released == {}
    assert result.history and len(result.history) == TRAIN.epochs
    assert any("per machine" in note for note in result.notes)


def test_machine_epsilon_matches_an_independent_accountant(private_rul):
    """Rate from the number of training MACHINES (not windows), steps from the schedule, in
    dp-accounting's PLD (no preprocessing statistic: the SGD steps get the whole budget)."""
    frame, result, _ = private_rul
    privacy = result.privacy
    machines_train = result.split["train_units"]
    batches = math.ceil(machines_train / TRAIN.batch_size)
    assert privacy["sample_rate"] == pytest.approx(1 / batches)
    assert privacy["steps"] == TRAIN.epochs * batches
    assert privacy["delta"] <= 1 / (10 * frame["machine"].nunique())
    pre = privacy["stages"][0]
    assert pre["n_histograms"] == 0 and pre["noise_multiplier"] is None
    assert_composed_epsilon(privacy, batches=batches, epochs=TRAIN.epochs)


def test_the_artifact_scales_each_machine_by_its_own_first_readings(private_rul):
    """The private artifact holds public settings only ("baseline"), no fitted scaler; a
    machine's channels read its drift from its own first readings, only readings up to the
    row itself count, and shifting or stretching one machine's sensor leaves its channels
    as they were (nothing global is read)."""
    frame, result, _ = private_rul
    loaded = rul.load(result.artifact_path)
    assert "scaler" not in loaded.metadata
    assert loaded.metadata["baseline"] == {"readings": TRAIN.window,
                                          "position_scale": TRAIN.rul_cap, "clip": 10.0}
    baseline = rul.MachineBaseline.from_dict(loaded.metadata["baseline"])
    one = frame[frame["machine"] == frame["machine"].iloc[0]]
    prepared = rul.prepare(one, MAPPING, cap=TRAIN.rul_cap, need_target=False)
    channels = baseline.channels(prepared)
    temperature = prepared.features[:, 0]
    early = temperature[:TRAIN.window]
    last = len(temperature) - 1
    assert channels[last, 0] == pytest.approx(
        np.clip((temperature[last] - early.mean()) / early.std(), -10, 10), rel=1e-5)
    # Row 3 reads rows 1-3 only (a later reading cannot reach back).
    assert channels[2, 0] == pytest.approx(
        (temperature[2] - temperature[:3].mean()) / temperature[:3].std(), rel=1e-5)
    assert channels[0, 0] == 0.0  # one reading: no spread yet
    np.testing.assert_allclose(channels[:, -1], prepared.positions / TRAIN.rul_cap)
    moved = one.assign(temperature=one["temperature"] * 3 + 100)
    np.testing.assert_allclose(
        baseline.channels(rul.prepare(moved, MAPPING, cap=TRAIN.rul_cap,
                                      need_target=False)), channels, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_images_of_one_person_share_a_split_and_are_sampled_as_one(tmp_path):
    """With the privacy unit mapped, a person's images stay on one side of the split, the
    private classifier samples persons (one image each per step), and the run's epsilon is
    the person-level SGD figure (no preprocessing statistic: the stage costs nothing)."""
    from ml_core.families.image import run as run_images
    from ml_core.families.image.data import person_split
    from verticals.manufacturing.demo_images import image_frame
    from verticals.manufacturing.vertical import VISUAL_INSPECTION

    frame = image_frame(14, seed=3)
    frame["operator"] = [f"op{i // 3}" for i in range(len(frame))]  # 3 images a person
    mapping = ColumnMapping(target="label", roles=(("image", "file"),
                                                   ("privacy_unit", "operator")))
    spec = dataclasses.replace(
        VISUAL_INSPECTION, train=dataclasses.replace(VISUAL_INSPECTION.train, epochs=2,
                                                     batch_size=8))
    captured: list = []
    with private_plans(captured):
        result = run_images(frame=frame, mapping=mapping, spec=spec, pretrained=False,
                            privacy=PrivacyConfig(enabled=True, target_epsilon=8.0),
                            artifact_dir=tmp_path)
    persons = frame["operator"].to_numpy()
    split = person_split(np.zeros(len(frame), dtype=np.int64), persons, spec.train)
    sides = [set(persons[rows]) for rows in (split.train, split.val, split.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert {k: result.split[k] for k in ("train", "val", "test")} == {
        "train": len(split.train), "val": len(split.val), "test": len(split.test)}
    assert set(frame.set_index("file").loc[result.predictions["row_id"], "operator"]) \
        == sides[2]
    assert result.split["method"] == "by_person" and result.split["unit"] == "person"
    dataset = captured[0].dataset
    assert isinstance(dataset, PersonExamples)
    assert len(dataset) == result.split["persons_train"] == len(sides[0])
    assert len(dataset) < result.split["train"]
    privacy = result.privacy
    assert privacy["unit"]["column"] == "operator"
    assert privacy["contribution_bound"]["max_rows_per_person"] == 1
    assert privacy["stages"][0]["epsilon"] == 0.0
    batches = math.ceil(result.split["persons_train"] / 8)
    assert privacy["sample_rate"] == pytest.approx(1 / batches)
    independent = pld.PLDAccountant(value_discretization_interval=1e-4).compose(
        dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
            1 / batches, dp_accounting.GaussianDpEvent(privacy["noise_multiplier"])),
            privacy["steps"])).get_epsilon(privacy["delta"])
    assert privacy["epsilon"] == pytest.approx(independent, rel=0.02)


def test_texts_of_one_person_share_a_split_and_are_sampled_as_one(tmp_path):
    """Text: with the privacy unit mapped, a patient's notes stay on one side, the private
    model samples patients (one note each per step) and the run's epsilon is the
    person-level SGD figure; without it, each note is a person and the report says so."""
    from ml_core.families import text
    from tests.ml_core.test_family_text import MAPPING as NOTES_MAPPING
    from tests.ml_core.test_family_text import SPEC as NOTES_SPEC
    from tests.ml_core.test_family_text import TINY, notes

    frame = notes(240, seed=0)
    frame["patient"] = [f"p{i // 4}" for i in range(len(frame))]  # 4 notes a patient
    mapping = dataclasses.replace(NOTES_MAPPING,
                                  roles=(*NOTES_MAPPING.roles, ("privacy_unit", "patient")))
    captured: list = []
    train = dataclasses.replace(NOTES_SPEC.train, epochs=2)
    with private_plans(captured):
        result = text.run(frame=frame, mapping=mapping, spec=NOTES_SPEC, train=train,
                          privacy=PrivacyConfig(enabled=True, target_epsilon=3.0),
                          artifact_dir=tmp_path / "person", encoder=TINY)
    test_patients = set(frame.loc[result.predictions["row_id"], "patient"])
    dataset = captured[0].dataset
    assert isinstance(dataset, PersonExamples)
    train_rows = dataset.tensors[0].numpy()  # positions of the training notes
    train_patients = set(frame["patient"].to_numpy()[train_rows])
    assert not train_patients & test_patients
    assert len(dataset) == len(train_patients) < len(train_rows)
    privacy = result.privacy
    assert privacy["unit"]["column"] == "patient" and privacy["unit"]["rows_are_persons"] is False
    assert privacy["contribution_bound"]["max_rows_per_person"] == 1
    assert privacy["stages"][0]["epsilon"] == 0.0  # nothing but the weights is released
    independent = pld.PLDAccountant(value_discretization_interval=1e-4).compose(
        dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
            privacy["sample_rate"], dp_accounting.GaussianDpEvent(privacy["noise_multiplier"])),
            privacy["steps"])).get_epsilon(privacy["delta"])
    assert privacy["epsilon"] == pytest.approx(independent, rel=0.02)
    assert any("'patient'" in note and "Privacy:" in note for note in result.notes)

    rows_only = text.run(frame=frame, mapping=NOTES_MAPPING, spec=NOTES_SPEC, train=train,
                         privacy=PrivacyConfig(enabled=True, target_epsilon=3.0),
                         artifact_dir=tmp_path / "rows", encoder=TINY)
    assert rows_only.privacy["unit"]["rows_are_persons"] is True
