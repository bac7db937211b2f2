"""Multi-series demand forecasting with one global model (task FORECASTING, family "forecaster").

Upload: long format, one row per (series, period). Roles: ``series`` (repeatable: store,
item), ``time`` (dates, any common format, day-first when ambiguous), the target
(quantity or sales), optional ``covariate`` columns (price, promotion, holiday, ...).

Model: :class:`ml_core.models.forecaster.GlobalForecaster`, an MLP shared by every
series with a series embedding, trained by **direct multi-horizon** forecasting: one
example per (series, origin t, step h <= horizon) predicts ``y[t + h]`` from values up
to ``t`` (8 lags, 14 for daily data; 4- and 13-period means; the seasonal values around
``t + h - m``), the target date's calendar and covariates, and a one-hot of ``h``. No
recursion, so errors do not compound. Targets are divided by each series' mean training
level, so large and small stores train on one scale (and the L1 loss weighs them alike).

Split by time, over the dates of the whole table: test = the last ``horizon`` periods,
validation = the ``horizon`` periods before, training = everything earlier (asserted:
every test date is later than every training and validation date). Validation picks the
epoch; the test forecasts start from the last validation period, as they would in use.
**A given test file** (:func:`ml_core.data.attach_labelled_test`, a published split) holds
the horizon's actuals for series of the training file: the test is exactly its periods and
validation the ``horizon`` periods before them (:func:`given_test_periods` refuses unknown
series and dates not after the training file's last one).

Privacy. The unit is one series (a store-department history), or the mapped
``privacy_unit`` column's value (a customer holding several series). A private run samples
units, not windows, at the accountant's rate, one window of a drawn unit per step
(:class:`ml_core.sampling.PersonExamples`), clipped as the unit's whole contribution, and
releases the last epoch's weights. Its model holds nothing per series: no series embedding,
and every window is divided by its own recent level (:func:`window_scales`, recomputed from
the series' history when forecasting) instead of a fitted per-series scale; numeric
covariates are read against the window's own recent values (:func:`window_covariates`), so
no statistic of them is released; a categorical covariate's levels come from a noisy
thresholded histogram charged to the run's one composed epsilon
(:class:`ml_core.person_privacy.PrivatePlan`). A private model corrects the seasonal-drift
forecast (:data:`PRIVATE_BASE`), starts at it exactly (a zero output layer) and steps at a
tenth of the learning rate: with tens of series the noise leaves little to learn beyond a
good base. The split stays by time: what is protected is each series' training history;
its validation and test periods (its last ones) are the curator's evaluation. The
non-private twin keeps the embeddings (it is not released).

Metrics: MAE, RMSE, WAPE, MASE (scaled by each series' in-sample seasonal-naive MAE; the
season is inferred from the dates: 52 weekly, 7 daily, 12 monthly) against the naive,
seasonal-naive and seasonal-drift forecasts (:func:`baseline_forecasts`); the best one by
the primary metric is the baseline.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ml_core import fairness, group_metrics
from ml_core.data import given_test_rows, listed
from ml_core.families.base import MetricDeclaration, ModelFamily, Supports, register_family
from ml_core.families.forecast_windows import (
    MAX_COVARIATE_LEVELS,
    CovariateEncoding,
    Series,
    WindowConfig,
    baseline_forecasts,
    calendar_features,
    forecast_metrics,
    mase_scale,
    parse_dates,
    season_for,
    series_keys,
    split_series,
    window_covariates,
    window_features,
    window_scales,
)
from ml_core.families.module_artifacts import load_module, save_module
from ml_core.families.tensor_training import FittedModule, fit_module
from ml_core.models.forecaster import GlobalForecaster
from ml_core.person_privacy import PrivatePlan, person_batch_size
from ml_core.privacy_statement import privacy_notes
from ml_core.private_statistics import (
    contribution_weights,
    person_codes,
    private_level_counts,
)
from ml_core.runner import (
    Baseline,
    Evaluation,
    FamilyHooks,
    FitCall,
    Fitted,
    RunInputs,
    Saved,
    family_runner,
    json_ready,
    with_groups,
)
from ml_core.spec import (
    ColumnMapping,
    ColumnRole,
    PrivacyConfig,
    PrivacyUnit,
    ProblemSpec,
    TaskType,
    TrainConfig,
)
from ml_core.validation import ValidationIssue

MODEL_FAMILY = "forecaster"
METRICS = ("mae", "rmse", "wape", "mase")
# Store- or item-level groups describe a business, not people.
FAIRNESS_KIND = "operational"
CHART_SERIES = 4
EMBEDDING_DIM = 4
# The baseline forecasts reported beside the model (forecast_windows.baseline_forecasts).
BASELINES = ("naive", "seasonal_naive", "seasonal_drift")
# The forecast a model corrects. A private model corrects the seasonal naive forecast
# shifted by the change of the series' level since a season earlier: with series-level
# noise it learns little beyond its base (docs/privacy.md), so the base should be good.
NONPRIVATE_BASE = "seasonal_naive"
PRIVATE_BASE = "seasonal_drift"
# A private model steps at this share of the training learning rate: on Walmart.csv the
# full rate moved it away from its base on the validation periods (MASE 0.620 against
# 0.601 at a tenth, seeds 0-2; docs/privacy.md).
PRIVATE_LEARNING_RATE_SCALE = 0.1


# --- preparing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    series: list[Series]
    config: WindowConfig
    frequency: str
    step_days: float
    date_format: str | None
    encodings: tuple[CovariateEncoding, ...]
    merged_rows: int
    dropped_rows: int
    # The periods of a given test file (the forecast horizon's actuals), sorted; None: none.
    given_test: np.ndarray | None = None


def covariate_columns(mapping: ColumnMapping) -> tuple[str, ...]:
    """Covariates: the ``covariate`` role, plus explicitly listed features."""
    taken = {mapping.target, *mapping.role_columns("series"), mapping.role("time")}
    listed = [*mapping.role_columns("covariate"), *mapping.features]
    return tuple(dict.fromkeys(c for c in listed if c not in taken))


def _times(frame: pd.DataFrame, column: str) -> tuple[pd.Series, str | None, bool]:
    parsed, fmt = parse_dates(frame[column])
    if parsed.notna().all() or not pd.api.types.is_numeric_dtype(frame[column]):
        return parsed, fmt, True
    # Integer periods (week 1, 2, ...): ordered but undated, so no calendar features.
    return pd.to_numeric(frame[column], errors="coerce").astype(float), None, False


def prepare(
    frame: pd.DataFrame, mapping: ColumnMapping, *, horizon: int,
    encodings: tuple[CovariateEncoding, ...] | None = None, date_format: str | None = None,
) -> Prepared:
    """Ordered series from a long table (rows whose time does not parse are dropped)."""
    time_column = mapping.role("time")
    if time_column is None:
        raise ValueError("demand forecasting needs a column with the 'time' role")
    if date_format and date_format != "datetime":
        times = pd.to_datetime(frame[time_column].astype("string").str.strip(),
                               format=date_format, errors="coerce")
        fmt, dated = date_format, True
    else:
        times, fmt, dated = _times(frame, time_column)
    keep = times.notna().to_numpy()
    dropped = int((~keep).sum())
    frame, times = frame[keep], times[keep]
    keys = series_keys(frame, mapping.role_columns("series"))
    given_test = given_test_periods(frame, times=times, keys=keys)
    columns = covariate_columns(mapping)
    if encodings is None:
        encodings = tuple(CovariateEncoding.fit(c, frame[c]) for c in columns)
    covariates = (np.concatenate([e.encode(frame[e.column]) for e in encodings], axis=1)
                  if encodings else np.zeros((len(frame), 0)))
    series, merged = split_series(
        frame=frame, times=times, target=frame[mapping.target],
        keys=keys, covariates=covariates,
    )
    gaps = [np.diff(s.times) for s in series if len(s.times) > 1]
    if dated:
        steps = np.concatenate(gaps).astype("timedelta64[s]").astype(float) / 86400 if gaps \
            else np.array([7.0])
    else:
        steps = np.concatenate(gaps).astype(float) if gaps else np.array([1.0])
    step = float(np.median(steps))
    frequency, season = season_for(step) if dated else ("periods", 1)
    config = WindowConfig(horizon=int(horizon), season=season,
                          n_lags=14 if season == 7 else 8,
                          n_covariates=int(covariates.shape[1]), dated=dated)
    return Prepared(series=series, config=config, frequency=frequency, step_days=step,
                    date_format=fmt, encodings=encodings, merged_rows=merged,
                    dropped_rows=dropped, given_test=given_test)


def given_test_periods(frame: pd.DataFrame, *, times: pd.Series, keys: pd.Series
                       ) -> np.ndarray | None:
    """The sorted periods of a given test file's rows (``ml_core.data.attach_labelled_test``
    marks them): the actuals of the forecast horizon for series of the training file, as a
    published forecasting split holds them. None without one. ValueError naming the series
    the training file lacks (no history to forecast from) or the test dates that are not
    later than the training file's last date (the test would overlap what was learnt)."""
    marked = given_test_rows(frame)
    if marked is None:
        return None
    unknown = sorted(set(keys[marked]) - set(keys[~marked]))
    if unknown:
        raise ValueError(f"the test file has series the training file lacks ({listed(unknown)})"
                         "; a given test file holds the later periods of the training file's "
                         "series")
    tested, trained = times[marked].to_numpy(), times[~marked].to_numpy()
    if not len(trained):
        raise ValueError("the training file has no rows with a readable date")
    last = trained.max()
    overlap = np.unique(tested[tested <= last])
    if len(overlap):
        raise ValueError(f"the test file's dates {listed([_time_text(t) for t in overlap])} "
                         f"are not after the training file's last date ({_time_text(last)}); "
                         "a given test file holds the periods after the training data")
    return np.unique(tested)


def numeric_covariates(encodings: tuple[CovariateEncoding, ...]) -> np.ndarray:
    """Per covariate feature: whether it is a numeric column (not a one-hot level)."""
    return np.array([not e.levels for e in encodings for _ in e.names()], dtype=bool)


def _raw_features(series: Series, origins: np.ndarray, steps: np.ndarray, *,
                  scale: float | np.ndarray, config: WindowConfig, covariate_fill: np.ndarray,
                  target_times: np.ndarray | None = None,
                  target_covariates: np.ndarray | None = None,
                  relative: np.ndarray | None = None) -> np.ndarray:
    """The pairs' features, the values divided by ``scale``: the series' one scale, or one
    per pair (its window's own, :func:`window_scales`). Covariates at the target date:
    unknown ones filled with ``covariate_fill``, or with ``relative`` (a private model:
    which covariate features are numeric) each read against the window's own level
    (:func:`window_covariates`)."""
    targets = origins + steps
    if target_times is None:
        target_times = series.times[targets]
    if target_covariates is None:
        target_covariates = series.covariates[targets]
    if relative is not None:
        covariates = window_covariates(series.covariates, origins, target_covariates,
                                       numeric=relative)
    else:
        covariates = np.where(np.isnan(target_covariates), covariate_fill[None, :],
                              target_covariates)
    per_pair = np.ndim(scale) > 0
    features = window_features(
        scaled=series.values / (1.0 if per_pair else scale), origins=origins, steps=steps,
        target_calendar=calendar_features(target_times, dated=config.dated),
        target_covariates=covariates, config=config,
    )
    if per_pair:
        features[:, :config.n_value_features] /= np.asarray(scale, dtype=np.float32)[:, None]
    return features


# --- splitting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """The (origin, step) pairs of one part of the split, over all series."""

    features: np.ndarray
    series_index: np.ndarray  # 1-based, 0 = unknown
    scaled_target: np.ndarray
    target: np.ndarray
    scale: np.ndarray  # per pair: its series' scale
    base: np.ndarray  # per pair: the seasonal-naive forecast the model corrects
    mase_scale: np.ndarray
    baselines: dict[str, np.ndarray]
    series: list[str]
    positions: list[tuple[int, int]]  # (series number, position of the target)
    steps: np.ndarray


def _time_cutoffs(prepared: Prepared, horizon: int, given_test: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, object]:
    times = np.unique(np.concatenate([s.times for s in prepared.series]))
    if given_test is not None:
        if len(given_test) > horizon:
            raise ValueError(
                f"the test file covers {len(given_test)} periods, more than the forecast "
                f"horizon ({horizon}): set the horizon to {len(given_test)} or give fewer "
                "periods")
        # Validation: the last horizon periods of the training file; test: the given ones.
        times = times[times < given_test[0]]
        needed = horizon + prepared.config.n_lags + 2
        if len(times) < needed:
            raise ValueError(f"the training file has {len(times)} distinct periods; "
                             f"forecasting {horizon} ahead needs at least {needed} "
                             "(training and validation windows) before the test file's")
        return times[-horizon:], given_test, times[-horizon - 1]
    needed = 2 * horizon + prepared.config.n_lags + 2
    if len(times) < needed:
        raise ValueError(
            f"the table has {len(times)} distinct periods; forecasting {horizon} ahead "
            f"needs at least {needed} (training, validation and test windows)"
        )
    return times[-2 * horizon:-horizon], times[-horizon:], times[-2 * horizon - 1]


def _empty_block(config: WindowConfig) -> dict:
    return {"features": [], "series_index": [], "scaled_target": [], "target": [],
            "scale": [], "base": [], "mase_scale": [], "series": [], "positions": [],
            "steps": [], **{name: [] for name in BASELINES}}


def _add_pairs(block: dict, *, number: int, series: Series, origins: np.ndarray,
               steps: np.ndarray, scale: float | None, mase: float, config: WindowConfig,
               fill: np.ndarray, relative: np.ndarray | None = None,
               base: str = NONPRIVATE_BASE) -> None:
    """``scale`` None: each pair is scaled by its window's own level, and its covariates
    read against the window's own (``relative``: which are numeric; private runs). ``base``
    names the baseline forecast the model corrects."""
    if len(origins) == 0:
        return
    targets = origins + steps
    if scale is None:
        scale = window_scales(series.values, origins)
    block["features"].append(_raw_features(series, origins, steps, scale=scale, config=config,
                                           covariate_fill=fill, relative=relative))
    block["series_index"].append(np.full(len(origins), number + 1))
    baselines = baseline_forecasts(series.values, origins, steps, config.season)
    # The model learns a correction to a baseline forecast (residual learning): an
    # untrained model starts at that baseline instead of at zero.
    block["base"].append(baselines[base])
    block["scaled_target"].append((series.values[targets] - baselines[base]) / scale)
    block["target"].append(series.values[targets])
    block["scale"].append(np.broadcast_to(scale, len(origins)).astype(float))
    block["mase_scale"].append(np.full(len(origins), mase))
    for name in BASELINES:
        block[name].append(baselines[name])
    block["series"].extend([series.key] * len(origins))
    block["positions"].extend((number, int(t)) for t in targets)
    block["steps"].append(steps)


def _finish(block: dict, n_features: int) -> Block:
    def cat(name: str, width: int | None = None) -> np.ndarray:
        if block[name]:
            return np.concatenate(block[name])
        return np.zeros((0, width)) if width else np.zeros(0)

    return Block(
        features=cat("features", n_features).astype(np.float32),
        series_index=cat("series_index").astype(np.int64),
        scaled_target=cat("scaled_target").astype(np.float32), target=cat("target"),
        scale=cat("scale"), base=cat("base"), mase_scale=cat("mase_scale"),
        baselines={name: cat(name) for name in BASELINES},
        series=block["series"], positions=block["positions"],
        steps=cat("steps").astype(int),
    )


@dataclass(frozen=True)
class SplitData:
    train: Block
    val: Block
    test: Block
    scales: dict[str, float]
    covariate_fill: np.ndarray
    feature_mean: np.ndarray
    feature_std: np.ndarray
    summary: dict
    skipped_series: list[str]


def private_standardisation(config: WindowConfig) -> tuple[np.ndarray, np.ndarray]:
    """The ``(mean, std)`` a private model standardises its features with: public
    constants, nothing read from the rows (window-scaled values, window-relative covariates,
    calendar and one-hot steps are on public scales already)."""
    return (np.zeros(config.n_features, dtype=np.float32),
            np.ones(config.n_features, dtype=np.float32))


def split_by_time(prepared: Prepared, *, horizon: int,
                  given_test: np.ndarray | None = None, private: bool = False) -> SplitData:
    """Training windows end by the cutoff; validation and test forecast the next two
    ``horizon``-period blocks. With ``given_test`` (the periods of a given test file) the
    test block is those periods and validation the ``horizon`` periods before them.
    Feature standardisation and scales use training data only: exact per-series scales and
    feature statistics, or with ``private`` each window's own level and covariates read
    against the window's own (nothing per series, no statistic of the rows)."""
    config = prepared.config
    val_times, test_times, train_end = _time_cutoffs(prepared, horizon, given_test)
    train, val, test = (_empty_block(config) for _ in range(3))
    scales: dict[str, float] = {}
    relative = numeric_covariates(prepared.encodings) if private else None
    base = PRIVATE_BASE if private else NONPRIVATE_BASE
    fill = np.zeros(config.n_covariates)
    if not private and prepared.series and config.n_covariates:
        stacked = np.concatenate([s.covariates[s.times <= train_end] for s in prepared.series])
        if len(stacked):
            fill = np.nan_to_num(np.nanmean(stacked, axis=0))
    skipped: list[str] = []
    for number, series in enumerate(prepared.series):
        in_train = series.times <= train_end
        n_train = int(in_train.sum())
        known = series.values[:n_train]
        if n_train < 2 or not np.isfinite(known).any():
            skipped.append(series.key)
            continue
        level = float(np.nanmean(np.abs(known)))
        scale = level if math.isfinite(level) and level > 0 else 1.0
        scales[series.key] = scale
        if private:
            scale = None  # each window's own level: see _add_pairs
        mase = mase_scale(known, config.season)
        for h in range(1, horizon + 1):
            origins = np.arange(0, n_train - h)
            targets_known = np.isfinite(series.values[origins + h])
            _add_pairs(train, number=number, series=series, origins=origins[targets_known],
                       steps=np.full(int(targets_known.sum()), h), scale=scale, mase=mase,
                       config=config, fill=fill, relative=relative, base=base)
        for block, window in ((val, val_times), (test, test_times)):
            positions = np.flatnonzero(np.isin(series.times, window)
                                       & np.isfinite(series.values))
            before = np.flatnonzero(series.times < window[0])
            if len(positions) == 0 or len(before) == 0:
                continue
            origin = int(before[-1])
            steps = positions - origin
            keep = (steps >= 1) & (steps <= horizon)
            _add_pairs(block, number=number, series=series,
                       origins=np.full(int(keep.sum()), origin), steps=steps[keep],
                       scale=scale, mase=mase, config=config, fill=fill, relative=relative,
                       base=base)
    n_features = config.n_features
    parts = [_finish(b, n_features) for b in (train, val, test)]
    if len(parts[0].target) == 0 or len(parts[2].target) == 0:
        raise ValueError("no series has enough history for training and a test window")
    last_train = max(prepared.series[n].times[t] for n, t in parts[0].positions)
    last_val = max((prepared.series[n].times[t] for n, t in parts[1].positions),
                   default=last_train)
    first_test = min(prepared.series[n].times[t] for n, t in parts[2].positions)
    # The leakage guard: the test lies strictly after everything the model learnt from
    # or was selected on.
    assert first_test > last_train and first_test > last_val, "test overlaps training"
    if private:
        mean, std = private_standardisation(config)
    else:
        mean = parts[0].features.mean(axis=0)
        std = parts[0].features.std(axis=0)
        std = np.where(std > 1e-8, std, 1.0)
    summary = {
        "method": "time" if given_test is None else "given_test_file",
        "train": int(len(parts[0].target)), "val": int(len(parts[1].target)),
        "test": int(len(parts[2].target)),
        "unit": "forecast points (series x period x step)",
        "train_end": _time_text(train_end), "val_start": _time_text(val_times[0]),
        "test_start": _time_text(test_times[0]), "test_end": _time_text(test_times[-1]),
        "horizon": int(horizon), "series": len(scales),
    }
    return SplitData(train=parts[0], val=parts[1], test=parts[2],
                     scales={} if private else scales,
                     covariate_fill=fill, feature_mean=mean.astype(np.float32),
                     feature_std=std.astype(np.float32), summary=summary,
                     skipped_series=skipped)


def _time_text(value: object) -> str:
    if isinstance(value, np.datetime64 | pd.Timestamp):
        return pd.Timestamp(value).date().isoformat()
    return f"{float(value):g}"


# --- training -------------------------------------------------------------------------


def _standardised(block: Block, data: SplitData) -> torch.Tensor:
    return torch.from_numpy((block.features - data.feature_mean) / data.feature_std)


def _forecast(model: nn.Module, block: Block, data: SplitData) -> np.ndarray:
    """Forecasts in the series' own units."""
    if len(block.target) == 0:
        return np.zeros(0)
    with torch.no_grad():
        scaled = model(_standardised(block, data), torch.from_numpy(block.series_index))
    return block.base + scaled.double().numpy() * block.scale


def _wape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    total = float(np.abs(y_true).sum())
    return float(np.abs(y_pred - y_true).sum() / total) if total > 0 else 0.0


def _fit(*, data: SplitData, n_series: int, train: TrainConfig, call: FitCall,
         privacy: PrivacyConfig | None = None, persons: np.ndarray | None = None
         ) -> FittedModule:
    """``persons`` (one privacy unit per training pair) with ``privacy``: person-level
    DP-SGD (a drawn series brings one window per step), no series embedding, the last
    epoch's weights."""
    n_features = data.train.features.shape[1]
    private = privacy is not None
    if private:
        train = dataclasses.replace(
            train, learning_rate=train.learning_rate * PRIVATE_LEARNING_RATE_SCALE)

    def build() -> nn.Module:
        # A private model starts as its base forecast exactly (a zero output layer): the
        # noisy steps then move it only as far as they must.
        return GlobalForecaster(n_features, 0 if private else n_series,
                                embedding_dim=0 if private else EMBEDDING_DIM,
                                hidden_sizes=train.hidden_sizes, zero_output=private)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        features, series, target = batch
        # Mean-reduced, matching privacy.make_private's loss_reduction="mean".
        return nn.functional.l1_loss(model(features, series), target, reduction="mean")

    def val_score(model: nn.Module) -> float:
        block = data.val if len(data.val.target) else data.train
        return -_wape(block.target, _forecast(model, block, data))

    tensors = (_standardised(data.train, data), torch.from_numpy(data.train.series_index),
               torch.from_numpy(data.train.scaled_target))
    return fit_module(build=build, tensors=tensors, loss_fn=loss_fn, val_score=val_score,
                      train=train, privacy=privacy, stage=call.stage,
                      progress=call.progress, should_stop=call.should_stop,
                      checkpoint_path=call.checkpoint_path, persons=persons,
                      # A private model is its last DP-SGD step's (no epoch chosen on
                      # private validation periods).
                      select_on_validation=not private)



def _sensitive_groups(prepared: Prepared, block: Block, mapping: ColumnMapping,
                      spec: ProblemSpec) -> pd.DataFrame:
    rows = pd.concat([prepared.series[n].first_rows.iloc[[t]] for n, t in block.positions])
    return pd.DataFrame(
        {c: fairness.band(rows[c], spec.banding_for(c)).to_numpy() for c in mapping.sensitive},
        columns=list(mapping.sensitive),
    )


def _fairness(*, block: Block, forecast: np.ndarray, groups: pd.DataFrame,
              spec: ProblemSpec) -> dict:
    # Relative to each series' level, so a large store's bigger absolute errors do not
    # read as unfairness against it.
    return group_metrics.regression_by_group(
        y_true=block.target / block.scale, y_pred=forecast / block.scale, sensitive=groups,
        kind=FAIRNESS_KIND, min_group_size=spec.fairness.min_group_size,
    )


def _charts(*, prepared: Prepared, block: Block, forecast: np.ndarray, baseline: np.ndarray,
            baseline_name: str, horizon: int) -> dict:
    totals: dict[int, float] = {}
    for (number, _), actual in zip(block.positions, block.target, strict=True):
        totals[number] = totals.get(number, 0.0) + abs(float(actual))
    chosen = sorted(totals, key=lambda n: (-totals[n], prepared.series[n].key))[:CHART_SERIES]
    charts = []
    for number in sorted(chosen, key=lambda n: prepared.series[n].key):
        series = prepared.series[number]
        mine = [i for i, (n, _) in enumerate(block.positions) if n == number]
        test_positions = [block.positions[i][1] for i in mine]
        start = max(0, min(test_positions) - 2 * horizon)
        positions = list(range(start, max(test_positions) + 1))
        predicted = {block.positions[i][1]: (forecast[i], baseline[i]) for i in mine}
        charts.append({
            "series": series.key,
            "dates": [_time_text(series.times[p]) for p in positions],
            "actual": [_finite(series.values[p]) for p in positions],
            "forecast": [_finite(predicted[p][0]) if p in predicted else None
                         for p in positions],
            "baseline": [_finite(predicted[p][1]) if p in predicted else None
                         for p in positions],
        })
    return {"forecast": charts, "baseline_name": baseline_name}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _predictions(*, prepared: Prepared, block: Block, forecast: np.ndarray,
                 baseline: np.ndarray, groups: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({
        "row_id": [prepared.series[n].row_ids[t] for n, t in block.positions],
        "series": block.series,
        "date": [_time_text(prepared.series[n].times[t]) for n, t in block.positions],
        "step": block.steps,
        "y_true": block.target,
        "y_pred": forecast,
        "baseline": baseline,
        **{name: block.baselines[name] for name in BASELINES},
        # The series' mean training level: error by group is relative to it.
        "series_scale": block.scale,
        "mase_scale": block.mase_scale,
    })
    return with_groups(table, groups)


def _notes(*, prepared: Prepared, data: SplitData, privacy: PrivacyConfig,
           mapping: ColumnMapping, fitted: FittedModule) -> list[str]:
    summary = data.summary
    test_part = ("the given test file's periods" if summary["method"] == "given_test_file"
                 else f"the last {summary['horizon']} periods of every series")
    notes = [
        f"Split by time: training up to {summary['train_end']}, validation from "
        f"{summary['val_start']}, test {summary['test_start']} to {summary['test_end']} "
        f"({test_part}). Every test date is later than all training and validation data.",
        "Direct multi-horizon forecasting: one global model for all series predicts each "
        f"step 1..{summary['horizon']} ahead from the values known at the forecast origin "
        "(no recursion, so errors do not compound).",
        f"Frequency inferred from the dates: {prepared.frequency} (season "
        f"{prepared.config.season}); MASE divides by each series' in-sample "
        "seasonal-naive error.",
    ]
    if prepared.date_format not in (None, "datetime"):
        notes.append(f"Dates read with the format {prepared.date_format} (day-first when "
                     "ambiguous).")
    if prepared.encodings:
        names = ", ".join(e.column for e in prepared.encodings)
        notes.append(
            f"Covariates ({names}) are used at the forecast dates, i.e. assumed known in "
            "advance (planned prices, promotions, holidays). A covariate only observed "
            "afterwards (weather, CPI) leaks future information: exclude it or supply "
            "its forecast."
        )
    if prepared.merged_rows:
        notes.append(f"{prepared.merged_rows} rows repeated a (series, date): their targets "
                     "were summed.")
    if prepared.dropped_rows:
        notes.append(f"{prepared.dropped_rows} rows had a date that could not be read and "
                     "were left out.")
    if data.skipped_series:
        notes.append(f"{len(data.skipped_series)} series had too little history before the "
                     "cutoff to train on and were left out.")
    if privacy.enabled:
        notes.append(
            "Differential privacy is on, per series: series (not windows) are sampled, a "
            "drawn series brings one of its windows to a step, every window is scaled by its "
            "own recent level and reads its numeric covariates against their own recent "
            "values (no per-series scale or embedding, no statistic of the rows is "
            "released). The model corrects the seasonal-drift forecast, starts at it and "
            "steps at a tenth of the learning rate. What is protected is each series' "
            "training history; its validation and test periods are the curator's "
            "evaluation."
        )
    else:
        notes.append("Differential privacy is off by default: store-level sales are "
                     "business data, not personal data. It can be switched on.")
    if mapping.sensitive:
        notes.append("Error by group is relative to each series' mean training level "
                     f"(MAE 0.05 = 5 % of a typical period); groups are {FAIRNESS_KIND} "
                     "(stores, regions), not people.")
    notes.extend(fitted.notes)
    return notes


@dataclass(frozen=True)
class RunData:
    """What the forecaster's hooks share: the series, the split by time and the groups."""

    prepared: Prepared
    data: SplitData
    groups: pd.DataFrame  # banded sensitive attributes per test point, by position
    plan: PrivatePlan | None = None  # a private run's preprocessing and SGD budget
    persons: np.ndarray | None = None  # a private run's privacy unit per series


class ForecastHooks(FamilyHooks):
    """The forecaster's hooks (see the module docstring)."""

    def prepare(self, inputs: RunInputs) -> RunData:
        horizon = int(inputs.train.horizon)
        plan = persons = None
        if inputs.privacy.enabled:
            plan, encodings = _private_plan(inputs)
            prepared = prepare(inputs.frame, inputs.mapping, horizon=horizon,
                               encodings=encodings)
            persons = _series_persons(prepared, inputs.mapping)
        else:
            prepared = prepare(inputs.frame, inputs.mapping, horizon=horizon)
        data = split_by_time(prepared, horizon=horizon, given_test=prepared.given_test,
                             private=plan is not None)
        test = data.test
        groups = (_sensitive_groups(prepared, test, inputs.mapping, inputs.spec)
                  if inputs.mapping.sensitive else pd.DataFrame(index=range(len(test.target))))
        return RunData(prepared=prepared, data=data, groups=groups, plan=plan,
                       persons=persons)

    def baseline(self, inputs: RunInputs, prepared: RunData) -> Baseline:
        test = prepared.data.test
        baselines = {name: forecast_metrics(y_true=test.target, y_pred=values,
                                            scales=test.mase_scale)
                     for name, values in test.baselines.items()}
        spec = inputs.spec
        primary = spec.primary_metric if spec.primary_metric in METRICS else "mase"
        best_name = min(baselines, key=lambda name: _sort_key(baselines[name][primary]))
        return Baseline(report={"name": best_name, "metrics": baselines[best_name],
                                "baselines": baselines}, detail=best_name)

    def fit(self, inputs: RunInputs, prepared: RunData, call: FitCall) -> Fitted:
        plan = prepared.plan if call.privacy is not None else None
        n_series = len(prepared.prepared.series)
        if plan is None:
            fitted = _fit(data=prepared.data, n_series=n_series, train=inputs.train,
                          call=call, privacy=call.privacy)
            return Fitted.of(fitted, model=fitted.module)
        # Integer codes: the checkpoint's signature hashes the array's bytes.
        codes, _ = person_codes(prepared.persons)
        persons = codes[[n for n, _ in prepared.data.train.positions]]
        n_units = len(set(persons))
        # Series per batch: few series still get several batches (amplification).
        train = dataclasses.replace(
            inputs.train, batch_size=person_batch_size(inputs.train.batch_size, n_units))

        def fit(privacy: PrivacyConfig) -> Fitted:
            fitted = _fit(data=prepared.data, n_series=n_series, train=train, call=call,
                          privacy=privacy, persons=persons)
            return Fitted.of(fitted, model=fitted.module)

        sgd = plan.sgd_for(n_units=n_units, train=train)
        return plan.charged(fit, sgd=sgd, spec=_unit_spec(inputs.spec, inputs.mapping),
                            mapping=inputs.mapping)

    def evaluate(self, inputs: RunInputs, prepared: RunData, fitted: Fitted) -> Evaluation:
        test = prepared.data.test
        forecast = _forecast(fitted.model, test, prepared.data)
        return Evaluation(
            metrics=forecast_metrics(y_true=test.target, y_pred=forecast,
                                     scales=test.mase_scale),
            fairness=_fairness(block=test, forecast=forecast, groups=prepared.groups,
                               spec=inputs.spec),
            detail=forecast)

    def split(self, inputs: RunInputs, prepared: RunData) -> dict:
        return prepared.data.summary

    def save(self, inputs: RunInputs, prepared: RunData, model: Fitted,
             evaluation: Evaluation, *, directory: Path, metadata: dict) -> Saved:
        series, data = prepared.prepared, prepared.data
        # A private model keeps nothing per series: windows scale themselves when serving.
        if prepared.plan is None:
            fitted = {"series_index": {s.key: i + 1 for i, s in enumerate(series.series)},
                      "scales": data.scales,
                      "covariates": [e.to_dict() for e in series.encodings],
                      "covariate_fill": data.covariate_fill.tolist(),
                      "feature_mean": data.feature_mean.tolist(),
                      "feature_std": data.feature_std.tolist()}
        else:
            # Nothing per series and no statistic of the rows: windows scale themselves and
            # read their covariates against their own level when serving; only a
            # categorical covariate's levels come from the (noisy) rows.
            levels = {e.column: list(e.levels) for e in series.encodings if e.levels}
            fitted = {"scaling": WINDOW_SCALING, "base": PRIVATE_BASE,
                      "covariate_columns": [e.column for e in series.encodings],
                      **({"covariate_levels": levels} if levels else {})}
        saved = save_module(module=model.model, directory=directory, metadata=json_ready({
            "model_family": MODEL_FAMILY, **metadata,
            "window": series.config.to_dict(), "frequency": series.frequency,
            "step_days": series.step_days, "date_format": series.date_format,
            **fitted, "split": data.summary, "device": model.device,
        }))
        return Saved(path=saved.path, sha256=saved.sha256)

    def predictions(self, inputs: RunInputs, prepared: RunData, baseline: Baseline,
                    evaluation: Evaluation) -> pd.DataFrame:
        test = prepared.data.test
        return _predictions(prepared=prepared.prepared, block=test, forecast=evaluation.detail,
                            baseline=test.baselines[baseline.detail], groups=prepared.groups)

    def charts(self, inputs: RunInputs, prepared: RunData, baseline: Baseline, model: Fitted,
               evaluation: Evaluation) -> dict:
        test = prepared.data.test
        return _charts(prepared=prepared.prepared, block=test, forecast=evaluation.detail,
                       baseline=test.baselines[baseline.detail], baseline_name=baseline.detail,
                       horizon=int(inputs.train.horizon))

    def notes(self, inputs: RunInputs, prepared: RunData, model: Fitted, twin: Fitted | None,
              evaluation: Evaluation) -> list[str]:
        return [*privacy_notes(model.privacy),
                *_notes(prepared=prepared.prepared, data=prepared.data,
                        privacy=inputs.privacy, mapping=inputs.mapping, fitted=model.trained)]


# The saved "scaling" of a private model: each window by its own level (window_scales).
WINDOW_SCALING = "window"
# What a private run releases besides the weights, and what it declares public.
RELEASED = {"covariate levels": "a categorical covariate's levels whose noisy series count "
                                "clears the threshold"}
PUBLIC = ("the confirmed mapping and covariate columns", "horizon, season, lags and training "
          "settings", "the calendar: date format and period spacing",
          "series, period and window counts of the split and its dates",
          "each window's scale and its numeric covariates' levels: computed from the window "
          "itself when forecasting")
CURATOR_ONLY = ("the naive and seasonal-naive baselines", "the non-private twin (with its "
                "series embeddings and per-series scales)", "error by group",
                "test metrics (each series' last periods)")


@dataclass(frozen=True)
class SeriesUnit(PrivacyUnit):
    """The forecaster's unit as the report states it: a series is named by all its series
    columns together (store and department), or the mapped ``privacy_unit`` column."""

    def describe(self, mapping: ColumnMapping) -> dict:
        described = super().describe(mapping)
        columns = mapping.role_columns(self.role)
        if len(columns) > 1:
            named = " and ".join(repr(column) for column in columns)
            described["text"] = f"one {self.name} (all rows sharing values of {named})"
        return described


def _unit_spec(spec: ProblemSpec, mapping: ColumnMapping) -> ProblemSpec:
    """``spec`` whose privacy unit is what a private run samples (:func:`_unit_values`)."""
    unit = spec.privacy_unit
    if mapping.role("privacy_unit") is not None:
        return replace(spec, privacy_unit=SeriesUnit("person", role="privacy_unit",
                                                     note=unit.note))
    return replace(spec, privacy_unit=SeriesUnit(unit.name, role=unit.role, note=unit.note))


def _unit_values(frame: pd.DataFrame, mapping: ColumnMapping) -> pd.Series:
    """The privacy unit of each row: the mapped ``privacy_unit`` column, else its series."""
    column = mapping.role("privacy_unit")
    if column is not None:
        return frame[column].astype("string").fillna("missing").astype(object)
    return series_keys(frame, mapping.role_columns("series"))


def _series_persons(prepared: Prepared, mapping: ColumnMapping) -> np.ndarray:
    """One privacy unit per series (its first row's: a series belongs to one person)."""
    return np.array([_unit_values(s.first_rows.iloc[:1], mapping).iloc[0]
                     for s in prepared.series], dtype=object)


def _private_plan(inputs: RunInputs) -> tuple[PrivatePlan, tuple[CovariateEncoding, ...]]:
    """The run's plan (persons: the privacy units of all series) and its covariate
    encodings, a categorical covariate's levels from a noisy histogram (the plan's)."""
    frame, mapping, privacy = inputs.frame, inputs.mapping, inputs.privacy
    units = _unit_values(frame, mapping).to_numpy()
    codes, n_units = person_codes(units)
    # Numeric or categorical: the column's type (public); a categorical one's levels are
    # chosen below, from the noisy histogram.
    kinds = [CovariateEncoding(c) if _is_numeric(frame[c]) else CovariateEncoding(c, ("?",))
             for c in covariate_columns(mapping)]
    # Numeric covariates release nothing: each window reads them against its own level.
    n_categorical = sum(bool(k.levels) for k in kinds)
    max_rows = int(privacy.max_rows_per_person)
    plan = PrivatePlan.for_units(
        privacy=privacy,
        unit_column=_unit_spec(inputs.spec, mapping).privacy_unit.column(mapping),
        n_units=n_units, n_histograms=n_categorical, n_categorical=n_categorical,
        max_rows=max_rows, released=RELEASED if n_categorical else {}, public=PUBLIC,
        curator_only=CURATOR_ONLY, examples_per_step=1,
        gradient="one of the series' windows per step, its gradient clipped to "
                 "max_grad_norm: the series' whole contribution to the step")
    if plan.noise is None:
        return plan, tuple(kinds)
    weights = contribution_weights(codes, max_rows=max_rows, seed=int(inputs.train.seed))
    generator = np.random.Generator(np.random.PCG64([int(inputs.train.seed), 0x1E7E1]))
    encodings = []
    for kind in kinds:
        if kind.levels:
            text = frame[kind.column].astype("string").str.strip().fillna("")
            counts = private_level_counts(list(text), weights, noise=plan.noise,
                                          generator=generator)
            top = sorted(counts, key=lambda level: (-counts[level], level))
            kind = CovariateEncoding(kind.column, tuple(
                level for level in top if level)[:MAX_COVARIATE_LEVELS])
        encodings.append(kind)
    return plan, tuple(encodings)


def _is_numeric(values: pd.Series) -> bool:
    """Whether :meth:`CovariateEncoding.fit` reads ``values`` as numbers (a column type)."""
    return not CovariateEncoding.fit("_", values).levels


run = family_runner(ForecastHooks(), doc="""Train, evaluate against naive baselines, audit
errors by group, and save a forecaster.

Same contract as :func:`ml_core.pipeline.run_training`; see the module docstring.
""")


def _sort_key(value: float) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


# --- reloading and scoring ------------------------------------------------------------


@dataclass(frozen=True)
class LoadedForecaster:
    model: GlobalForecaster
    metadata: dict


def load(path: Path | str) -> LoadedForecaster:
    """Restore a saved forecaster (eval mode, CPU); checks the weights' sha256."""
    model, metadata = load_module(path, GlobalForecaster)
    return LoadedForecaster(model=model, metadata=metadata)


def predict(loaded: LoadedForecaster, frame: pd.DataFrame) -> pd.DataFrame:
    """Forecast every series of ``frame`` from its last known target value.

    Rows after a series' last known value whose target is empty are forecast (up to the
    trained horizon; their covariates are used); a series without such rows gets
    ``horizon`` future periods at its usual spacing. Returns ``row_id`` (the frame's index,
    None for generated periods), ``series``, ``date``, ``step``, ``y_pred``.
    """
    meta = loaded.metadata
    mapping = ColumnMapping.from_dict(meta["mapping"])
    window = meta["window"]
    config = WindowConfig(**window)
    relative = "covariate_columns" in meta  # a private model (see ForecastHooks.save)
    if relative:
        levels = meta.get("covariate_levels", {})
        encodings = tuple(CovariateEncoding(c, tuple(levels.get(c, ())))
                          for c in meta["covariate_columns"])
        fill = np.zeros(config.n_covariates)
        mean, std = private_standardisation(config)
    else:
        encodings = tuple(CovariateEncoding(c["column"], tuple(c["levels"]))
                          for c in meta["covariates"])
        fill = np.asarray(meta["covariate_fill"], dtype=float)
        mean = np.asarray(meta["feature_mean"], dtype=np.float32)
        std = np.asarray(meta["feature_std"], dtype=np.float32)
    prepared = prepare(frame, mapping, horizon=config.horizon, encodings=encodings,
                       date_format=meta["date_format"])
    prepared = replace(prepared, config=config)
    rows = []
    for series in prepared.series:
        known = np.flatnonzero(np.isfinite(series.values))
        if len(known) == 0:
            continue
        origin = int(known[-1])
        if meta.get("scaling") == WINDOW_SCALING:
            scale = float(window_scales(series.values, np.array([origin]))[0])
        else:
            scale = meta["scales"].get(series.key)
        if scale is None:
            level = float(np.nanmean(np.abs(series.values[known])))
            scale = level if level > 0 else 1.0
        future = np.arange(origin + 1, min(origin + config.horizon, len(series.values) - 1) + 1)
        if len(future):
            steps = future - origin
            times, covariates = series.times[future], series.covariates[future]
            row_ids: list = list(series.row_ids[future])
        else:
            steps = np.arange(1, config.horizon + 1)
            times = _future_times(series.times[origin], steps, meta)
            covariates = np.full((len(steps), config.n_covariates), np.nan)
            row_ids = [None] * len(steps)
        features = _raw_features(series, np.full(len(steps), origin), steps, scale=scale,
                                 config=config, covariate_fill=fill, target_times=times,
                                 target_covariates=covariates,
                                 relative=(numeric_covariates(encodings) if relative
                                           else None))
        index = torch.full((len(steps),),
                           int(meta.get("series_index", {}).get(series.key, 0)))
        with torch.no_grad():
            scaled = loaded.model(torch.from_numpy((features - mean) / std), index)
        base = baseline_forecasts(series.values, np.full(len(steps), origin), steps,
                                  config.season)[meta.get("base", NONPRIVATE_BASE)]
        values = base + scaled.double().numpy() * scale
        for i, step in enumerate(steps):
            rows.append({"row_id": row_ids[i], "series": series.key,
                         "date": _time_text(times[i]), "step": int(step),
                         "y_pred": float(values[i])})
    return pd.DataFrame(rows, columns=["row_id", "series", "date", "step", "y_pred"])


def _future_times(last: object, steps: np.ndarray, meta: dict) -> np.ndarray:
    if meta["window"]["dated"]:
        delta = pd.Timedelta(days=float(meta["step_days"]))
        return np.array([pd.Timestamp(last) + delta * int(s) for s in steps],
                        dtype="datetime64[ns]")
    return np.asarray(last, dtype=float) + steps * float(meta["step_days"])


# --- validating -----------------------------------------------------------------------


def validate(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
             ) -> list[ValidationIssue]:
    """Forecasting checks beyond the generic ones: the time role is mapped and parses,
    the target is numeric, covariates exist, enough periods for the horizon, and no
    repeated (series, date) rows (a warning: they are summed); a given test file's series
    and dates fit the training file's (``test_file_mismatch``)."""
    issues: list[ValidationIssue] = []
    present = set(map(str, frame.columns))
    time_column = mapping.role("time")
    if time_column is None:
        return [ValidationIssue(code="time_required",
                                message="Choose the date column (role 'time').")]
    named = [("time", time_column), *(("series", c) for c in mapping.role_columns("series")),
             *(("covariate", c) for c in covariate_columns(mapping))]
    for role, column in named:
        if column not in present:
            issues.append(ValidationIssue(code="unknown_column", column=column,
                                          message=f"The {role} column '{column}' is not in "
                                                  "the file."))
    if issues:
        return issues
    times, fmt, dated = _times(frame, time_column)
    bad = times.isna() & frame[time_column].notna()
    if bad.any():
        rows = tuple(int(p) + 1 for p in np.flatnonzero(bad.to_numpy())[:20])
        issues.append(ValidationIssue(
            code="unparseable_dates", column=time_column, rows=rows,
            message=f"Column '{time_column}' has {int(bad.sum())} values that are not dates "
                    f"(rows {', '.join(map(str, rows))}).",
        ))
    if mapping.target in present:
        values = frame[mapping.target]
        numbers = pd.to_numeric(values, errors="coerce")
        text = numbers.isna() & values.notna()
        if text.any():
            rows = tuple(int(p) + 1 for p in np.flatnonzero(text.to_numpy())[:20])
            issues.append(ValidationIssue(
                code="target_not_numeric", column=mapping.target, rows=rows,
                message=f"The target '{mapping.target}' must be numbers; "
                        f"{int(text.sum())} values are not.",
            ))
    dated = times.notna().to_numpy()
    try:
        given_test_periods(frame[dated], times=times[dated],
                           keys=series_keys(frame[dated], mapping.role_columns("series")))
    except ValueError as exc:
        issues.append(ValidationIssue(code="test_file_mismatch", column=time_column,
                                      message=f"The given test file does not fit: {exc}."))
    horizon = spec.train.horizon
    periods = times.dropna().nunique()
    if periods < 2 * horizon + 10:
        issues.append(ValidationIssue(
            code="too_few_periods", column=time_column,
            message=f"The file covers {periods} periods; forecasting {horizon} ahead needs at "
                    f"least {2 * horizon + 10} (training, validation and test windows).",
        ))
    keys = series_keys(frame, mapping.role_columns("series"))
    repeated = pd.DataFrame({"k": keys, "t": times}).duplicated(keep=False)
    if repeated.any():
        rows = tuple(int(p) + 1 for p in np.flatnonzero(repeated.to_numpy())[:20])
        issues.append(ValidationIssue(
            code="repeated_periods", column=time_column, rows=rows, severity="warning",
            message=f"{int(repeated.sum())} rows repeat a (series, date): map every series "
                    "column (store, item); otherwise their targets are summed.",
        ))
    return issues


# --- registration -----------------------------------------------------------------------


@register_family
class ForecasterFamily(ModelFamily):
    name = MODEL_FAMILY
    task_types = (TaskType.FORECASTING,)
    required_roles = (ColumnRole.TARGET.value, ColumnRole.TIME.value)
    optional_roles = (ColumnRole.SERIES.value, ColumnRole.COVARIATE.value)
    # MASE is scaled by the seasonal naive forecast's error: that forecast scores 1.
    metrics = (
        MetricDeclaration("mase", higher_is_better=False, naive_level=1.0),
        MetricDeclaration("wape", higher_is_better=False),
        MetricDeclaration("mae", higher_is_better=False),
        MetricDeclaration("rmse", higher_is_better=False),
    )
    primary_metric = "mase"
    chart_kinds = ("forecast_vs_actual",)
    # A given test file: the later periods of the training file's series
    # (given_test_periods), tested on exactly those rows.
    supports = Supports(labelled_test_file=True)
    implementation = __name__
    # A private model: no series embedding, no per-series scale (each window scales itself),
    # covariate centres and scales from DP statistics (see PrivateScaling).
    artifact_public = frozenset({"window", "frequency", "step_days", "date_format", "split",
                                 "scaling", "base", "covariate_columns"})
    artifact_private = {"covariate_levels": "covariate levels"}
