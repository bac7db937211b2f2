"""Series-level privacy for the forecaster: a series with many windows is sampled, bounded
and accounted as ONE unit; the run's epsilon is one composition of its DP covariate
statistics and its SGD steps, equal to an independent dp-accounting computation; the split
stays by time (a series' test periods are its last ones, curator-only evaluation); and the
released model holds nothing per series."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ml_core.families import forecasting
from ml_core.families.forecast_windows import window_covariates
from ml_core.person_privacy import person_batch_size
from ml_core.sampling import PersonExamples
from tests.ml_core.test_person_privacy_sequences import run_privately
from tests.support.person_accounting import assert_composed_epsilon
from verticals.retail.demo_data import weekly_sales
from verticals.retail.vertical import DEMAND_FORECAST, FORECAST_SAMPLE_MAPPING

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

HORIZON = 4
TRAIN = dataclasses.replace(DEMAND_FORECAST.train, epochs=2, batch_size=32, horizon=HORIZON)
N_SERIES = 40


@pytest.fixture(scope="module")
def private_forecast(tmp_path_factory):
    frame = weekly_sales(N_SERIES * 120, 0)  # 40 series of 120 weeks: many windows each
    result, plan = run_privately(forecasting.run, frame=frame,
                                 mapping=FORECAST_SAMPLE_MAPPING, spec=DEMAND_FORECAST,
                                 train=TRAIN, artifact_dir=tmp_path_factory.mktemp("forecast"))
    return frame, result, plan


def test_series_not_windows_are_sampled_one_window_each(private_forecast):
    frame, result, plan = private_forecast
    dataset = plan.dataset
    assert isinstance(dataset, PersonExamples)
    assert len(dataset) == N_SERIES == frame.groupby(["store", "item"]).ngroups
    assert len(dataset) < result.split["train"]
    assert dataset.rows_per_person.min() > 100  # several windows per series


def test_series_epsilon_matches_an_independent_accountant(private_forecast):
    """Rate from the number of training SERIES (not windows), steps from the schedule, in
    dp-accounting's PLD. Numeric covariates (price, promo, holiday) release no statistic
    (each window reads them against its own level), so the SGD steps get the whole
    budget."""
    _, result, _ = private_forecast
    privacy = result.privacy
    assert privacy["unit"]["name"] == "series"
    assert "'store' and 'item'" in privacy["unit"]["text"]  # the series, not the store
    assert privacy["contribution_bound"]["max_rows_per_person"] == 1
    assert [stage["stage"] for stage in privacy["stages"]] == ["preprocessing", "sgd"]
    preprocessing, sgd = privacy["stages"]
    assert preprocessing["n_histograms"] == 0 and preprocessing["noise_multiplier"] is None
    assert preprocessing["released"]["estimated_privately"] == {}
    assert privacy["epsilon"] <= sgd["epsilon"] + 1e-9
    assert privacy["delta"] <= 1 / (10 * N_SERIES)
    batches = math.ceil(N_SERIES / person_batch_size(TRAIN.batch_size, N_SERIES))
    assert privacy["sample_rate"] == pytest.approx(1 / batches)
    assert privacy["steps"] == TRAIN.epochs * batches
    assert_composed_epsilon(privacy, batches=batches, epochs=TRAIN.epochs)


def test_the_split_is_by_time_each_series_tested_on_its_last_periods(private_forecast):
    """The unit is the series and the split is by time: every series is trained on its
    history and tested on its own last periods (curator-only), never on earlier ones."""
    frame, result, _ = private_forecast
    split, predictions = result.split, result.predictions
    weeks = sorted(frame["week"].unique())
    assert split["train_end"] < split["val_start"] < split["test_start"] == weeks[-HORIZON]
    assert sorted(predictions["date"].unique()) == weeks[-HORIZON:]
    assert predictions.groupby("series")["date"].nunique().eq(HORIZON).all()
    assert predictions["series"].nunique() == N_SERIES
    assert any("training history" in note for note in result.notes)


def test_the_artifact_holds_nothing_per_series(private_forecast):
    frame, result, _ = private_forecast
    path = Path(result.artifact_path)
    metadata = {}
    for file in path.glob("*.json"):
        metadata.update(json.loads(file.read_text()))
    assert "scales" not in metadata and "series_index" not in metadata
    assert metadata["scaling"] == "window"
    loaded = forecasting.load(path)
    assert loaded.model.series_embedding is None
    assert not any("embedding" in name for name, _ in loaded.model.named_parameters())
    # Each window scales itself: a series ten times larger gets forecasts ten times larger
    # (a per-series scale fitted in training would not follow).
    history = frame[frame["week"] < sorted(frame["week"].unique())[-HORIZON]]
    bigger = history.assign(units_sold=history["units_sold"] * 10.0)
    plain = forecasting.predict(loaded, history).sort_values(["series", "step"])
    scaled = forecasting.predict(loaded, bigger).sort_values(["series", "step"])
    np.testing.assert_allclose(scaled["y_pred"].to_numpy(), 10 * plain["y_pred"].to_numpy(),
                               rtol=1e-4)


def test_a_mapped_privacy_unit_groups_series(tmp_path):
    """With a ``privacy_unit`` column (a customer holding several series), the customer
    is the sampled unit: fewer units than series."""
    frame = weekly_sales(12 * 120, 1)
    frame["owner"] = "o" + (frame["item"].astype("category").cat.codes % 3).astype(str)
    mapping = dataclasses.replace(FORECAST_SAMPLE_MAPPING,
                                  roles=(*FORECAST_SAMPLE_MAPPING.roles,
                                         ("privacy_unit", "owner")))
    result, plan = run_privately(forecasting.run, frame=frame, mapping=mapping,
                            spec=DEMAND_FORECAST, train=dataclasses.replace(TRAIN, epochs=1),
                            artifact_dir=tmp_path)
    owners = frame.groupby(["store", "item"])["owner"].first()
    assert len(plan.dataset) == owners.nunique() < len(owners)
    assert result.privacy["unit"]["column"] == "owner"


def test_a_categorical_covariate_releases_only_levels_many_series_hold(tmp_path):
    """A level held by one series (a canary) stays out of the released levels; a level
    every series holds clears the noisy threshold. Non-private runs keep every level."""
    # 160 series (the threshold at epsilon 3 is about 75 series), their last 40 weeks.
    frame = weekly_sales(160 * 120, 2)
    frame = frame[frame["week"] >= sorted(frame["week"].unique())[-40]]
    frame["event"] = np.where(frame["promo"] == 1, "sale", "none")
    first = frame["store"].eq(frame["store"].iloc[0]) & frame["item"].eq(frame["item"].iloc[0])
    frame.loc[first & (frame["promo"] == 0), "event"] = "canary"
    mapping = dataclasses.replace(FORECAST_SAMPLE_MAPPING,
                                  roles=(*FORECAST_SAMPLE_MAPPING.roles, ("covariate", "event")))
    result, _ = run_privately(forecasting.run, frame=frame, mapping=mapping,
                              spec=DEMAND_FORECAST, train=dataclasses.replace(TRAIN, epochs=1),
                              artifact_dir=tmp_path)
    metadata = forecasting.load(result.artifact_path).metadata
    levels = metadata["covariate_levels"]
    assert set(levels) == {"event"}  # numeric covariates keep no level nor statistic
    assert metadata["covariate_columns"] == ["price", "promo", "holiday", "event"]
    assert "none" in levels["event"] and "canary" not in levels["event"]
    # One noisy histogram: the categorical covariate's levels (numeric ones release none),
    # composed with the SGD steps in one accountant.
    assert result.privacy["stages"][0]["n_histograms"] == 1
    batches = math.ceil(160 / person_batch_size(TRAIN.batch_size, 160))
    assert_composed_epsilon(result.privacy, batches=batches, epochs=1)
    prepared = forecasting.prepare(frame, mapping, horizon=HORIZON)
    assert "canary" in {e.column: e.levels for e in prepared.encodings}["event"]


def test_window_covariates_read_the_window_and_the_target_date_only():
    """A numeric covariate is its change at the target date from its mean over the window
    (on asinh's scale); a one-hot level is as it is; unknown values read 0; positions after
    the origin other than the target are never read."""
    history = np.array([[1.0, 0.0], [3.0, 1.0], [np.nan, 0.0], [1e9, 1.0]])
    origins = np.array([1, 2])
    at_target = np.array([[2.0, 1.0], [np.nan, np.nan]])
    got = window_covariates(history, origins, at_target, numeric=np.array([True, False]),
                            width=2)
    expected_first = np.arcsinh(2.0) - (np.arcsinh(1.0) + np.arcsinh(3.0)) / 2
    np.testing.assert_allclose(got, [[expected_first, 1.0], [0.0, 0.0]])
