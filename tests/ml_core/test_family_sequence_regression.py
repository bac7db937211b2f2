"""Remaining useful life: windows, targets, the unit split, a given test set, baselines,
metrics, privacy, error by group, reload, validation."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dp_accounting import dp_event, pld
from sklearn.metrics import mean_absolute_error, mean_squared_error

from ml_core.families import sequence_regression as rul
from ml_core.spec import ColumnMapping, PrivacyConfig
from ml_core.trainer import TrainingCancelled
from verticals.manufacturing.demo_data import run_to_failure
from verticals.manufacturing.vertical import REMAINING_USEFUL_LIFE, RUL_SAMPLE_MAPPING

SPEC = REMAINING_USEFUL_LIFE
FAST = dataclasses.replace(SPEC.train, epochs=6)
NO_TARGET = dataclasses.replace(RUL_SAMPLE_MAPPING, target="")


def tiny_frame() -> pd.DataFrame:
    """Two units, shuffled rows, unit b starting at cycle 5."""
    frame = pd.DataFrame({
        "unit": ["a"] * 4 + ["b"] * 3,
        "cycle": [1, 2, 3, 4, 5, 6, 7],
        "s": [10.0, 11.0, 12.0, 13.0, 20.0, 21.0, 22.0],
    })
    return frame.sample(frac=1.0, random_state=0)


def test_nasa_score_and_metrics_match_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 125, 200)
    predicted = truth + rng.normal(0, 20, 200)
    expected = sum(math.exp(-(p - t) / 13) - 1 if p < t else math.exp((p - t) / 10) - 1
                   for t, p in zip(truth, predicted, strict=True))
    got = rul.rul_metrics(truth, predicted)
    assert got["nasa_score"] == pytest.approx(expected, rel=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt(mean_squared_error(truth, predicted)))
    assert got["mae"] == pytest.approx(mean_absolute_error(truth, predicted))
    # Late by 10 costs more than early by 10.
    assert rul.nasa_score([50], [60]) > rul.nasa_score([50], [40]) > 0


def test_target_is_computed_per_unit_and_capped() -> None:
    mapping = ColumnMapping(target="", roles=(("unit", "unit"), ("cycle", "cycle")))
    prepared = rul.prepare(tiny_frame(), mapping, cap=2)
    assert list(prepared.units) == ["a"] * 4 + ["b"] * 3
    assert list(prepared.target) == [2, 2, 1, 0, 2, 1, 0]  # min(max_cycle - cycle, 2)
    assert prepared.target_source == "computed"
    assert list(prepared.positions) == [1, 2, 3, 4, 1, 2, 3]


def test_windows_stay_inside_their_unit_and_pad_with_the_first_row() -> None:
    mapping = ColumnMapping(target="", roles=(("unit", "unit"), ("cycle", "cycle")))
    prepared = rul.prepare(tiny_frame(), mapping, cap=125)
    channels = prepared.features.astype(np.float32)  # the raw sensor as the only channel
    got = rul.windows(channels, prepared, np.arange(7), 3)[:, :, 0]
    assert got.tolist() == [[10, 10, 10], [10, 10, 11], [10, 11, 12], [11, 12, 13],
                            [20, 20, 20], [20, 20, 21], [20, 21, 22]]


def test_split_is_by_unit_and_seeded() -> None:
    frame = run_to_failure(2000, 3)
    prepared = rul.prepare(frame, RUL_SAMPLE_MAPPING, cap=125)
    split = rul.split_by_unit(prepared, FAST)
    parts = [set(prepared.units[rows]) for rows in (split.train_rows, split.val_rows,
                                                    split.test_rows)]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(split.train_rows) + len(split.val_rows) + len(split.test_rows) == len(frame)
    again = rul.split_by_unit(prepared, FAST)
    assert split.summary == again.summary and split.summary["method"] == "by_unit"


def test_last_value_baseline_is_the_training_life_curve() -> None:
    frame = run_to_failure(1500, 4)
    prepared = rul.prepare(frame, RUL_SAMPLE_MAPPING, cap=125)
    split = rul.split_by_unit(prepared, FAST)
    predicted = rul.baseline_predictions(prepared, split, split.test_rows)
    training = prepared.frame.iloc[split.train_rows].assign(
        capped=np.minimum(prepared.frame.iloc[split.train_rows]["rul"], 125),
        position=prepared.positions[split.train_rows])
    curve = training.groupby("position")["capped"].mean()
    oldest = int(curve.index.max())
    positions = np.minimum(prepared.positions[split.test_rows], oldest)
    np.testing.assert_allclose(predicted["last_value"], curve.loc[positions].to_numpy())
    assert predicted["mean_rul"][0] == pytest.approx(training["capped"].mean())


@pytest.fixture(scope="module")
def nonprivate(tmp_path_factory):
    frame = run_to_failure(1500, 11)
    result = rul.run(frame=frame, mapping=RUL_SAMPLE_MAPPING, spec=SPEC,
                     privacy=PrivacyConfig(enabled=False), train=FAST,
                     artifact_dir=tmp_path_factory.mktemp("rul"))
    return frame, result


@pytest.mark.slow
def test_run_beats_both_baselines_and_reports_everything(nonprivate) -> None:
    _, result = nonprivate
    json.dumps(result.to_dict())
    assert result.task_type == "sequence_regression"
    assert set(result.metrics) == set(SPEC.metrics) == set(result.baseline["metrics"])
    assert result.baseline["name"] == SPEC.baseline == "last_value"
    for name in ("last_value", "mean_rul"):
        assert result.metrics["rmse"] < result.baseline["baselines"][name]["rmse"]
    assert result.nonprivate_metrics is None and result.privacy["enabled"] is False
    assert result.split["method"] == "by_unit"
    predictions = result.predictions
    assert len(predictions) == result.split["test"]
    assert predictions["y_pred"].between(0, SPEC.train.rul_cap).all()
    assert (predictions["y_true"] <= SPEC.train.rul_cap).all()
    assert result.metrics["rmse"] == pytest.approx(
        math.sqrt(mean_squared_error(predictions["y_true"], predictions["y_pred"])))
    chart = result.charts["rul"]
    assert chart and {"unit", "cycles", "true", "predicted"} <= set(chart[0])
    assert len(chart[0]["cycles"]) == len(chart[0]["true"]) == len(chart[0]["predicted"])
    assert any("Split by unit" in note for note in result.notes)


@pytest.mark.slow
def test_error_by_line_matches_pandas_and_is_operational(nonprivate) -> None:
    _, result = nonprivate
    report = result.fairness["line"]
    assert report["kind"] == "operational"
    table = result.predictions.assign(error=lambda t: t["y_pred"] - t["y_true"])
    grouped = table.groupby("line")["error"]
    for line, group in report["by_group"].items():
        errors = grouped.get_group(line)
        assert group["count"] == len(errors)
        assert group["mae"] == pytest.approx(errors.abs().mean())
        assert group["bias"] == pytest.approx(errors.mean())
        assert group["rmse"] == pytest.approx(math.sqrt((errors ** 2).mean()))
    assert result.fairness_passed == all(r["passed"] for r in result.fairness.values())


@pytest.mark.slow
def test_artifact_reloads_to_the_same_predictions(nonprivate) -> None:
    frame, result = nonprivate
    metadata = json.loads((Path(result.artifact_path) / "metadata.json").read_text())
    assert metadata["model_family"] == "sequence_regressor"
    assert {"spec_key", "seed", "privacy"} <= set(metadata)
    loaded = rul.load(result.artifact_path)
    test_units = set(result.predictions["unit"])
    scored = rul.predict(loaded, frame[frame["unit"].isin(test_units)].drop(columns=["rul"]))
    merged = result.predictions.merge(scored, on="row_id", suffixes=("", "_reloaded"))
    assert len(merged) == len(result.predictions)
    np.testing.assert_allclose(merged["y_pred_reloaded"], merged["y_pred"], atol=1e-4)


@pytest.mark.slow
def test_a_given_test_set_is_judged_on_each_units_last_cycle(tmp_path) -> None:
    frame = run_to_failure(1500, 5).drop(columns=["rul"])
    held_out = run_to_failure(600, 6)
    # Truncate each test unit 10-30 cycles before failure, like C-MAPSS test files.
    truncated = held_out[held_out["rul"] >= held_out["unit"].map(
        dict(zip(sorted(held_out["unit"].unique()), [10, 20, 30, 15, 25], strict=False)))]
    truth = truncated.groupby("unit")["rul"].min()
    combined = rul.attach_test_set(frame, truncated.drop(columns=["rul"]), truth.to_numpy(),
                                   unit="unit", cycle="cycle")
    is_test = combined[rul.SPLIT_COLUMN] == "test"
    assert combined.loc[is_test, "unit"].str.startswith("test:").all()
    assert list(combined.loc[is_test, "rul"]) == list(truncated["rul"])
    assert (combined.loc[~is_test, "rul"] >= 0).all()
    result = rul.run(frame=combined, mapping=RUL_SAMPLE_MAPPING, spec=SPEC,
                     privacy=PrivacyConfig(enabled=False),
                     train=dataclasses.replace(FAST, epochs=3), artifact_dir=tmp_path)
    assert result.split["method"] == "given_test_set"
    assert result.split["evaluation"] == "last_cycle_per_unit"
    assert len(result.predictions) == truncated["unit"].nunique()
    expected = {f"test:{unit}": min(value, 125) for unit, value in truth.items()}
    assert dict(zip(result.predictions["unit"], result.predictions["y_true"],
                    strict=True)) == expected


@pytest.mark.slow
def test_private_run_spends_its_budget_and_keeps_a_twin(tmp_path) -> None:
    frame = run_to_failure(1000, 2).drop(columns=["rul"])  # else a feature: it would leak
    result = rul.run(frame=frame, mapping=NO_TARGET, spec=SPEC,
                     privacy=PrivacyConfig(enabled=True, target_epsilon=3.0),
                     train=dataclasses.replace(FAST, epochs=3), artifact_dir=tmp_path)
    privacy = result.privacy
    assert privacy["enabled"] and 0 < privacy["epsilon"] <= 3.0 * 1.001
    event = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(privacy["sample_rate"],
                                       dp_event.GaussianDpEvent(privacy["noise_multiplier"])),
        privacy["steps"])
    independent = pld.PLDAccountant(value_discretization_interval=1e-3).compose(
        event).get_epsilon(privacy["delta"])
    assert independent == pytest.approx(privacy["epsilon"], rel=0.05, abs=0.05)
    assert result.nonprivate_metrics is not None and result.nonprivate_fairness is not None
    assert any("computed per unit" in note for note in result.notes)


def test_cancelling_stops_training(tmp_path) -> None:
    with pytest.raises(TrainingCancelled):
        rul.run(frame=run_to_failure(600, 1), mapping=RUL_SAMPLE_MAPPING, spec=SPEC,
                privacy=PrivacyConfig(enabled=False), train=FAST, artifact_dir=tmp_path,
                should_stop=lambda: True)


def test_validate_names_missing_roles_and_few_units() -> None:
    frame = run_to_failure(400, 0)
    codes = {i.code for i in rul.validate(frame, ColumnMapping(target="rul"), SPEC)}
    assert codes == {"unit_required", "cycle_required"}
    assert rul.validate(frame, RUL_SAMPLE_MAPPING, SPEC) == []
    warnings = rul.validate(frame, NO_TARGET, SPEC)
    assert [(i.code, i.severity) for i in warnings] == [("target_computed", "warning")]
    two_units = frame[frame["unit"].isin(["U001", "U002"])]
    assert "too_few_units" in {i.code for i in rul.validate(two_units, RUL_SAMPLE_MAPPING, SPEC)}
    broken = frame.assign(cycle=frame["cycle"].astype(object))
    broken.loc[3, "cycle"] = "n/a"
    issue = next(i for i in rul.validate(broken, RUL_SAMPLE_MAPPING, SPEC)
                 if i.code == "cycle_not_numeric")
    assert issue.rows == (4,)
