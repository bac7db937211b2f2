"""The forecasting family on synthetic weekly sales: time split, metrics against
independent recomputations, error by group against pandas groupby, reload, validation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error

from ml_core.families import forecasting
from ml_core.families.forecast_windows import parse_dates, season_for
from ml_core.pipeline import TrainingCancelled, run_training
from ml_core.spec import ColumnMapping
from verticals.retail.demo_data import weekly_sales
from verticals.retail.vertical import DEMAND_FORECAST, FORECAST_SAMPLE_MAPPING

HORIZON = 6
FAST = dataclasses.replace(DEMAND_FORECAST.train, epochs=4, horizon=HORIZON)


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return weekly_sales(600, 3)


@pytest.fixture(scope="module")
def result(sales, tmp_path_factory):
    return run_training(frame=sales, mapping=FORECAST_SAMPLE_MAPPING, spec=DEMAND_FORECAST,
                        train=FAST, artifact_dir=tmp_path_factory.mktemp("forecast"))


def test_parse_dates_prefers_iso_then_day_first() -> None:
    parsed, fmt = parse_dates(pd.Series(["05/02/10", "12/02/10", "26/10/12"]))
    assert fmt == "%d/%m/%y"
    assert parsed.tolist() == [pd.Timestamp("2010-02-05"), pd.Timestamp("2010-02-12"),
                               pd.Timestamp("2012-10-26")]
    assert parse_dates(pd.Series(["2024-01-31", "2024-02-07"]))[1] == "%Y-%m-%d"
    parsed, _ = parse_dates(pd.Series(["2024-01-31", "not a date"]))
    assert parsed.isna().tolist() == [False, True]
    assert season_for(7.0) == ("weekly", 52) and season_for(1.0) == ("daily", 7)


def test_split_is_by_time_and_test_is_the_last_horizon(sales, result) -> None:
    split = result.split
    assert split["method"] == "time" and split["horizon"] == HORIZON
    assert split["train_end"] < split["val_start"] < split["test_start"]
    weeks = sorted(sales["week"].unique())
    assert split["test_start"] == weeks[-HORIZON] and split["test_end"] == weeks[-1]
    predictions = result.predictions
    n_series = sales.groupby(["store", "item"]).ngroups
    assert len(predictions) == n_series * HORIZON
    assert sorted(predictions["date"].unique()) == weeks[-HORIZON:]
    assert sorted(predictions["step"].unique()) == list(range(1, HORIZON + 1))
    # row ids point at the frame's test rows
    rows = sales.loc[predictions["row_id"].to_numpy()]
    np.testing.assert_allclose(rows["units_sold"].to_numpy(), predictions["y_true"].to_numpy())
    assert any("Split by time" in note for note in result.notes)


def test_metrics_match_an_independent_computation(sales, result) -> None:
    p = result.predictions
    assert set(DEMAND_FORECAST.metrics) <= set(result.metrics)
    assert result.metrics["mae"] == pytest.approx(mean_absolute_error(p.y_true, p.y_pred))
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(p.y_true, p.y_pred)))
    assert result.metrics["wape"] == pytest.approx(
        (p.y_pred - p.y_true).abs().sum() / p.y_true.abs().sum())
    # Seasonal naive and the MASE scale recomputed with pandas from the raw table.
    ordered = sales.sort_values(["store", "item", "week"])
    last_year = ordered.groupby(["store", "item"])["units_sold"].shift(52)
    lookup = dict(zip(ordered.index, last_year, strict=True))
    # Each test week is h steps after the origin; h <= 52, so last year's value is known.
    np.testing.assert_allclose(p["seasonal_naive"], [lookup[r] for r in p.row_id])
    cutoff = result.split["train_end"]
    scales = {}
    for key, part in ordered[ordered["week"] <= cutoff].groupby(["store", "item"]):
        values = part["units_sold"].to_numpy()
        scales[f"{key[0]} / {key[1]}"] = np.mean(np.abs(values[52:] - values[:-52]))
    expected_mase = np.mean(np.abs(p.y_pred - p.y_true) / p.series.map(scales))
    assert result.metrics["mase"] == pytest.approx(expected_mase)
    baselines = result.baseline["baselines"]
    assert set(baselines) == {"naive", "seasonal_naive", "seasonal_drift"}
    assert baselines["seasonal_naive"]["mae"] == pytest.approx(
        mean_absolute_error(p.y_true, p.seasonal_naive))
    # Seasonal drift: last year's value plus the change of the 13-week mean between the
    # origin and a year before it.
    mean13 = ordered.groupby(["store", "item"])["units_sold"].transform(
        lambda s: s.rolling(13, min_periods=1).mean())
    position = ordered.groupby(["store", "item"]).cumcount()
    frame = ordered.assign(mean13=mean13, position=position)
    by_series = {key: part.set_index("position") for key, part in
                 frame.groupby(["store", "item"])}
    drift = []
    for row_id, step in zip(p.row_id, p.step, strict=True):
        row = frame.loc[row_id]
        part = by_series[(row["store"], row["item"])]
        origin = row["position"] - step
        drift.append(lookup[row_id] + part.loc[origin, "mean13"]
                     - part.loc[origin - 52, "mean13"])
    np.testing.assert_allclose(p["seasonal_drift"], drift)
    assert result.baseline["name"] == min(baselines, key=lambda n: baselines[n]["mase"])
    assert set(result.baseline["metrics"]) == set(result.metrics)
    json.dumps(result.to_dict())


def test_error_by_group_matches_pandas(result) -> None:
    p = result.predictions
    report = result.fairness["region"]
    assert report["kind"] == "operational"
    relative = p.assign(error=(p.y_pred - p.y_true) / p.series_scale)
    for group, rows in relative.groupby("region"):
        got = report["by_group"][group]
        assert got["count"] == len(rows)
        assert got["mae"] == pytest.approx(rows.error.abs().mean())
        assert got["bias"] == pytest.approx(rows.error.mean())
    assert result.fairness_passed == report["passed"]


def test_charts_and_privacy_off_by_default(result) -> None:
    charts = result.charts["forecast"]
    assert 1 <= len(charts) <= 4
    for chart in charts:
        assert {"series", "dates", "actual", "forecast", "baseline"} <= set(chart)
        assert len(chart["dates"]) == len(chart["actual"]) == len(chart["forecast"])
        assert sum(v is not None for v in chart["forecast"]) == HORIZON
    assert result.privacy["enabled"] is False and result.nonprivate_metrics is None
    assert result.task_type == "forecasting"


def test_reloads_and_forecasts_the_test_weeks_again(sales, result) -> None:
    loaded = forecasting.load(result.artifact_path)
    meta = loaded.metadata
    assert {"model_family", "spec_key", "seed", "privacy"} <= set(meta)
    assert meta["model_family"] == "forecaster"
    blanked = sales.copy()
    blanked.loc[result.predictions["row_id"].to_numpy(), "units_sold"] = np.nan
    forecast = forecasting.predict(loaded, blanked)
    merged = result.predictions.merge(forecast, on="row_id", suffixes=("", "_reloaded"))
    assert len(merged) == len(result.predictions)
    np.testing.assert_allclose(merged["y_pred_reloaded"], merged["y_pred"], rtol=1e-5)
    # Without future rows, the next `horizon` weeks are generated.
    future = forecasting.predict(loaded, sales)
    assert future["row_id"].isna().all() and future["step"].max() == HORIZON


def test_validate_reports_forecasting_problems(sales) -> None:
    assert forecasting.validate(sales, FORECAST_SAMPLE_MAPPING, DEMAND_FORECAST) == []
    no_time = ColumnMapping(target="units_sold", roles=(("series", "store"),))
    assert forecasting.validate(sales, no_time, DEMAND_FORECAST)[0].code == "time_required"
    broken = sales.copy()
    broken.loc[3, "week"] = "someday"
    broken["units_sold"] = broken["units_sold"].astype(object)
    broken.loc[5, "units_sold"] = "lots"
    codes = {i.code for i in forecasting.validate(broken, FORECAST_SAMPLE_MAPPING,
                                                  DEMAND_FORECAST)}
    assert {"unparseable_dates", "target_not_numeric"} <= codes
    one_series = dataclasses.replace(FORECAST_SAMPLE_MAPPING, roles=(("time", "week"),))
    issues = forecasting.validate(sales, one_series, DEMAND_FORECAST)
    assert [i.code for i in issues] == ["repeated_periods"] and issues[0].severity == "warning"


def test_cancellation_raises(sales, tmp_path) -> None:
    with pytest.raises(TrainingCancelled):
        run_training(frame=sales, mapping=FORECAST_SAMPLE_MAPPING, spec=DEMAND_FORECAST,
                     train=FAST, artifact_dir=tmp_path, should_stop=lambda: True)


def test_too_short_history_is_refused(sales, tmp_path) -> None:
    short = sales[sales["week"] >= sorted(sales["week"].unique())[-15]]
    with pytest.raises(ValueError, match="distinct periods"):
        run_training(frame=short, mapping=FORECAST_SAMPLE_MAPPING, spec=DEMAND_FORECAST,
                     train=FAST, artifact_dir=tmp_path)
