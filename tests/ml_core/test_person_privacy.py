"""Privacy that holds for a person: one composed epsilon, DP preprocessing, a clean artifact.

The figures are checked against independent computations: Google's dp-accounting for the
composed epsilon and the Gaussian's calibration, scipy's normal tail for the vocabulary
threshold's release probability, and exact pandas statistics for what must NOT be released.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ml_core.artifacts import ENCODER_FILE, METADATA_FILE
from ml_core.data import fit_private_encoder
from ml_core.pipeline import run_training
from ml_core.private_statistics import (
    NUMERIC_VALUES,
    SCORE_BINS,
    PreprocessingNoise,
    person_codes,
)
from ml_core.spec import (
    ColumnMapping,
    ColumnRole,
    PrivacyConfig,
    PrivacyUnit,
    ProblemSpec,
    RoleHint,
    TaskType,
    TrainConfig,
)
from tests.support.person_accounting import assert_composed_epsilon

SPEC = ProblemSpec(
    key="person_test", name="Person test", description="", task_type=TaskType.BINARY_CLASSIFICATION,
    hints=(RoleHint(role=ColumnRole.TARGET, names=("outcome",), required=True),),
    privacy=PrivacyConfig(target_epsilon=3.0),
    privacy_unit=PrivacyUnit("patient"),
)
MAPPING = ColumnMapping(target="outcome", sensitive=("sex",),
                        roles=(("privacy_unit", "patient"),))
TRAIN = TrainConfig(epochs=3, batch_size=32, learning_rate=1e-2, hidden_sizes=(16,), patience=3)


def encounters(n_patients: int = 400, seed: int = 0) -> pd.DataFrame:
    """Patients with 1-6 encounters each; the outcome depends on a lab value and age."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(n_patients):
        age, sex = rng.normal(55, 15), rng.choice(["F", "M"])
        for _ in range(rng.integers(1, 7)):
            lab = rng.normal()
            risk = 1 / (1 + np.exp(-(1.5 * lab + 0.04 * (age - 55))))
            rows.append({"patient": f"p{patient}", "age": age, "sex": sex, "lab": lab,
                         "ward": rng.choice(["a", "b", "c"]),
                         "outcome": "yes" if rng.random() < risk else "no"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def person_run(tmp_path_factory):
    frame = encounters()
    result = run_training(frame=frame, mapping=MAPPING, spec=SPEC, train=TRAIN,
                          artifact_dir=tmp_path_factory.mktemp("person"))
    return frame, result


def test_the_report_states_the_unit_the_bound_and_the_stages(person_run):
    _, result = person_run
    privacy = result.privacy
    assert privacy["unit"]["name"] == "patient" and privacy["unit"]["column"] == "patient"
    assert privacy["unit"]["rows_are_persons"] is False
    assert privacy["contribution_bound"]["max_rows_per_person"] == 8
    assert [stage["stage"] for stage in privacy["stages"]] == ["preprocessing", "sgd"]
    assert 0 < privacy["epsilon"] <= privacy["target_epsilon"] == 3.0
    assert any("patient" in note for note in result.notes)
    assert any("curator" in note for note in result.notes)


def test_person_epsilon_matches_an_independent_accountant(person_run):
    """Sample rate from the number of training PERSONS, steps from the schedule, and the
    epsilon of the preprocessing Gaussian composed with those steps by dp-accounting."""
    frame, result = person_run
    privacy = result.privacy
    persons_train = result.split["persons_train"]
    assert persons_train < result.split["train"]  # several rows per person
    batches = math.ceil(persons_train / TRAIN.batch_size)
    assert privacy["sample_rate"] == pytest.approx(1 / batches)
    assert privacy["steps"] == TRAIN.epochs * batches
    # Delta is sized for persons, never above 1 / (10 * persons).
    assert privacy["delta"] <= 1 / (10 * frame["patient"].nunique())
    # The preprocessing Gaussian at its share (f * 3, f * delta / 2), composed with the steps.
    assert_composed_epsilon(privacy, batches=batches, epochs=TRAIN.epochs)


def test_the_artifact_holds_only_declared_or_private_statistics(person_run):
    frame, result = person_run
    path = Path(result.artifact_path)
    encoder = json.loads((path / ENCODER_FILE).read_text())
    metadata = json.loads((path / METADATA_FILE).read_text())
    # Every key of the artifact is accounted for: declared public, a DP output, or the
    # privacy report itself. A new key fails here until it is classified.
    public = {"spec_key", "task_type", "mapping", "feature_columns", "schema_fingerprint",
              "positive_label", "target_rule", "train_config", "seed", "split", "device",
              "versions", "epsilon", "delta", "privacy", "architecture", "format_version",
              "best_epoch"}
    private = {"threshold", "weights_sha256"}  # the hash of DP weights: post-processing
    assert set(metadata) <= public | private, set(metadata) - public - private
    # No epoch is chosen on (private) validation rows: the released weights are the last
    # DP-SGD step's, whatever the validation metric said.
    assert metadata["best_epoch"] == TRAIN.epochs
    assert len(result.history) == TRAIN.epochs
    # column_types and hashed hold the analyst's declared column kinds and hierarchies
    # (public, none here): no statistic of the rows.
    assert set(encoder) == {"numeric", "categorical", "medians", "means", "scales",
                            "with_missing_indicator", "levels", "feature_names", "asinh",
                            "column_types", "hashed"}
    assert encoder["column_types"] == {} and encoder["hashed"] == {}
    # Numeric columns are read through the public asinh transform. DP outputs are
    # post-processed noisy histograms on public grids: medians are grid values, the
    # threshold a score bin's edge. Raw statistics are not.
    assert encoder["asinh"] == encoder["numeric"]
    for column in encoder["numeric"]:
        values = np.arcsinh(frame[column])
        assert encoder["medians"][column] in set(NUMERIC_VALUES.tolist())
        assert encoder["medians"][column] != pytest.approx(float(values.median()))
        assert encoder["scales"][column] != pytest.approx(float(values.std(ddof=0)))
    assert (metadata["threshold"] * SCORE_BINS) == pytest.approx(
        round(metadata["threshold"] * SCORE_BINS))
    # The person column is who a row is, never an input.
    assert "patient" not in encoder["numeric"] + encoder["categorical"]


def canary_frame(holders: int, *, rows_each: int = 5, crowd: int = 300) -> pd.DataFrame:
    """A crowd of persons holding common levels, and ``holders`` persons holding "canary"
    on every one of their ``rows_each`` rows."""
    persons = [f"c{i}" for i in range(crowd) for _ in range(2)]
    levels = ["common"] * (2 * crowd)
    persons += [f"k{i}" for i in range(holders) for _ in range(rows_each)]
    levels += ["canary"] * (holders * rows_each)
    return pd.DataFrame({"person": persons, "ward": levels})


def canary_rate(frame: pd.DataFrame, noise: PreprocessingNoise, runs: int) -> float:
    codes, _ = person_codes(frame["person"].to_numpy())
    seen = sum("canary" in fit_private_encoder(frame, ("ward",), persons=codes, noise=noise,
                                               seed=seed).levels["ward"]
               for seed in range(runs))
    return seen / runs


def test_a_level_held_by_one_person_is_released_as_rarely_as_delta_says():
    noise = PreprocessingNoise.plan(noise_multiplier=2.0, n_categorical=1, n_histograms=1,
                                    threshold_delta=1e-3, max_rows=8)
    # One person with five rows of the level weighs 1 however many rows they have.
    bound = norm.sf((noise.threshold - 1.0) / noise.sigma)
    assert bound * noise.max_rows <= 1e-3 * (1 + 1e-9)
    assert canary_rate(canary_frame(1), noise, runs=300) == 0.0  # expected 300 * 1.2e-4


def test_a_level_held_by_threshold_persons_appears_as_often_as_the_mechanism_says():
    noise = PreprocessingNoise.plan(noise_multiplier=2.0, n_categorical=1, n_histograms=1,
                                    threshold_delta=1e-3, max_rows=8)
    holders = round(noise.threshold)
    expected = norm.sf((noise.threshold - holders) / noise.sigma)  # independent of the code
    assert noise.level_release_probability(holders) == pytest.approx(expected)
    runs = 400
    rate = canary_rate(canary_frame(holders), noise, runs=runs)
    standard_error = math.sqrt(expected * (1 - expected) / runs)
    assert abs(rate - expected) < 4 * standard_error, (rate, expected)


def test_without_a_person_column_each_row_is_a_person_and_the_report_says_so(tmp_path):
    frame = encounters(n_patients=150, seed=1)
    mapping = ColumnMapping(target="outcome", sensitive=("sex",), exclude=("patient",))
    result = run_training(frame=frame, mapping=mapping, spec=SPEC, train=TRAIN,
                          artifact_dir=tmp_path)
    unit = result.privacy["unit"]
    assert unit["rows_are_persons"] is True and unit["name"] == "row"
    assert "each row is taken to be a different patient" in unit["text"]
    assert result.privacy["contribution_bound"]["max_rows_per_person"] == 1
    assert result.split["method"] == "stratified"


def test_the_private_encoder_follows_the_analysts_kinds_and_hierarchies() -> None:
    """After the merge with main's real-data encoder: a numeric-looking code declared
    categorical is one-hot over noisy levels, a declared hierarchy is hashed (no statistic
    learnt), and both survive the encoder's JSON."""
    from ml_core.data import TabularEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(20, 80, 400).astype(float),
                          "ward": rng.choice([1, 2, 3], 400),
                          "diag": rng.choice(["250.1", "401.9", "428.0"], 400)})
    noise = PreprocessingNoise.plan(noise_multiplier=1.0, n_categorical=1, n_histograms=2,
                                    threshold_delta=1e-6, max_rows=1)
    encoder = fit_private_encoder(frame, ("age", "ward", "diag"), persons=np.arange(400),
                                  noise=noise, seed=0, column_types={"ward": "categorical"},
                                  hierarchies={"diag": "icd9"})
    assert encoder.numeric == ("age",) and encoder.asinh == ("age",)
    assert encoder.categorical == ("ward",)
    assert dict(encoder.hashed) == {"diag": "icd9"}
    again = TabularEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert np.array_equal(again.transform(frame), encoder.transform(frame))
    assert encoder.transform(frame).shape == (400, encoder.n_features)


def test_a_given_test_file_keeps_its_rows_and_validation_is_split_by_person() -> None:
    from ml_core.data import split_by_person

    persons = pd.Series(np.repeat(np.arange(200), 3))
    given = np.zeros(600, dtype=bool)
    given[-60:] = True
    train, val, test, method = split_by_person(persons, test_fraction=0.2, val_fraction=0.2,
                                               seed=1, given_test=given)
    assert np.array_equal(test, np.flatnonzero(given))
    assert not set(persons[train]) & set(persons[val])
    assert len(train) + len(val) + len(test) == 600
    assert "by person" in method
