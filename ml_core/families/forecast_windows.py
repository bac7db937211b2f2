"""Long-format sales tables -> ordered series -> window features for a global forecaster.

Everything a forecast from origin ``t`` at step ``h`` sees comes from positions ``<= t``
of the target (lags, rolling means, the seasonal values ``t + h - m + {-1, 0, +1}``) plus
what is known about the target date itself (its calendar, and covariates that are
planned in advance: price, promotion, holiday). So a window can never read the value it
predicts, whatever the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Formats tried in order; the first that parses every value wins. Day-first before
# month-first: an ambiguous 05/02/10 is read as 5 February (European and most public
# retail files, Walmart.csv included). Two-digit years before four-digit ones, since
# "%Y" would read "10" as the year 10.
DATE_FORMATS = (
    "%Y-%m-%d", "%Y/%m/%d", "%Y-%m-%d %H:%M:%S",
    "%d/%m/%y", "%d/%m/%Y", "%d-%m-%y", "%d-%m-%Y", "%d.%m.%y", "%d.%m.%Y",
    "%m/%d/%y", "%m/%d/%Y",
)
SERIES_SEPARATOR = " / "
MAX_COVARIATE_LEVELS = 20


def parse_dates(values: pd.Series) -> tuple[pd.Series, str | None]:
    """``(datetimes, format)``; unparseable values are NaT. Datetime input passes through."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values), "datetime"
    text = values.astype("string").str.strip()
    present = text.notna()
    best: tuple[int, pd.Series, str] | None = None
    for fmt in DATE_FORMATS:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        ok = int(parsed[present].notna().sum())
        if ok == int(present.sum()):
            return parsed, fmt
        if best is None or ok > best[0]:
            best = (ok, parsed, fmt)
    assert best is not None
    return best[1], best[2]


def season_for(step_days: float) -> tuple[str, int]:
    """``(frequency name, season length)`` for the typical spacing of a series."""
    if 0.5 <= step_days <= 1.5:
        return "daily", 7
    if 6 <= step_days <= 8:
        return "weekly", 52
    if 27 <= step_days <= 32:
        return "monthly", 12
    if 88 <= step_days <= 93:
        return "quarterly", 4
    return "irregular", 1


@dataclass(frozen=True)
class CovariateEncoding:
    """How one covariate column becomes numbers: as is, or one-hot of known levels."""

    column: str
    levels: tuple[str, ...] = ()  # empty: numeric

    def names(self) -> list[str]:
        if not self.levels:
            return [self.column]
        return [f"{self.column}={level}" for level in self.levels]

    def encode(self, values: pd.Series) -> np.ndarray:
        if not self.levels:
            return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)[:, None]
        text = values.astype("string").str.strip()
        return np.stack([(text == level).fillna(False).to_numpy(dtype=float)
                         for level in self.levels], axis=1)

    def to_dict(self) -> dict:
        return {"column": self.column, "levels": list(self.levels)}

    @classmethod
    def fit(cls, column: str, values: pd.Series) -> CovariateEncoding:
        numeric = pd.to_numeric(values, errors="coerce")
        if values.notna().sum() == 0 or numeric.notna().sum() == values.notna().sum():
            return cls(column)
        counts = values.astype("string").str.strip().value_counts()
        return cls(column, tuple(str(v) for v in counts.index[:MAX_COVARIATE_LEVELS]))


@dataclass(frozen=True)
class Series:
    """One ordered series: its key, dates (or integer periods), values and covariates."""

    key: str
    times: np.ndarray  # datetime64[ns] or float periods
    values: np.ndarray  # float, NaN where unknown (future rows)
    covariates: np.ndarray  # (n, n_covariate_features), NaN where unknown
    row_ids: np.ndarray  # the frame's index for each position
    first_rows: pd.DataFrame  # one row per position: the original columns (sensitive, ...)


def series_keys(frame: pd.DataFrame, series_columns: tuple[str, ...]) -> pd.Series:
    """One string key per row: the series columns joined by ' / ' ("all" when none)."""
    if not series_columns:
        return pd.Series("all", index=frame.index, dtype=object)
    parts = [frame[column].astype("string").fillna("missing").str.strip()
             for column in series_columns]
    key = parts[0]
    for part in parts[1:]:
        key = key + SERIES_SEPARATOR + part
    return key.astype(object)


def split_series(
    *, frame: pd.DataFrame, times: pd.Series, target: pd.Series, keys: pd.Series,
    covariates: np.ndarray,
) -> tuple[list[Series], int]:
    """Ordered series; duplicate (key, time) rows are merged (target summed, covariates
    averaged, the first row kept as the id). Returns (series, number of merged rows)."""
    work = pd.DataFrame({"_key": keys.to_numpy(), "_time": times.to_numpy(),
                         "_y": pd.to_numeric(target, errors="coerce").to_numpy(dtype=float),
                         "_pos": np.arange(len(frame))})
    cov_names = [f"_c{i}" for i in range(covariates.shape[1])]
    for i, name in enumerate(cov_names):
        work[name] = covariates[:, i]
    work = work.sort_values(["_key", "_time", "_pos"], kind="stable")
    merged = int(work.duplicated(["_key", "_time"]).sum())
    if merged:
        # min_count=1: a time whose values are all unknown stays unknown (NaN), not 0.
        work = work.groupby(["_key", "_time"], sort=True, as_index=False).agg(
            _y=("_y", lambda s: s.sum(min_count=1)), _pos=("_pos", "first"),
            **{name: (name, "mean") for name in cov_names},
        )
    out: list[Series] = []
    index = frame.index.to_numpy()
    for key, part in work.groupby("_key", sort=True):
        positions = part["_pos"].to_numpy()
        out.append(Series(
            key=str(key), times=part["_time"].to_numpy(), values=part["_y"].to_numpy(float),
            covariates=part[cov_names].to_numpy(dtype=float).reshape(len(part), len(cov_names)),
            row_ids=index[positions], first_rows=frame.iloc[positions],
        ))
    return out, merged


def calendar_features(times: np.ndarray, *, dated: bool) -> np.ndarray:
    """sin/cos of the day of year and of the day of week of each time (zeros if undated)."""
    if not dated or len(times) == 0:
        return np.zeros((len(times), 4))
    stamps = pd.DatetimeIndex(times)
    doy = 2 * np.pi * stamps.day_of_year.to_numpy(dtype=float) / 365.25
    dow = 2 * np.pi * stamps.day_of_week.to_numpy(dtype=float) / 7
    return np.stack([np.sin(doy), np.cos(doy), np.sin(dow), np.cos(dow)], axis=1)


@dataclass(frozen=True)
class WindowConfig:
    horizon: int
    season: int
    n_lags: int
    n_covariates: int
    dated: bool

    @property
    def n_features(self) -> int:
        # lags, 2 rolling means and the same 2 a season earlier, 3 seasonal values +
        # availability flag, calendar, covariates, one-hot step
        return self.n_lags + 4 + 4 + 4 + self.n_covariates + self.horizon

    @property
    def n_value_features(self) -> int:
        """The leading features read from the series' values (lags, rolling means, seasonal
        values): linear in them, so dividing the values by a scale divides these."""
        return self.n_lags + 4 + 3

    @property
    def covariate_offset(self) -> int:
        """Where the covariates start: after the values, the availability flag, the
        calendar."""
        return self.n_value_features + 1 + 4

    def to_dict(self) -> dict:
        return {"horizon": self.horizon, "season": self.season, "n_lags": self.n_lags,
                "n_covariates": self.n_covariates, "dated": self.dated}


def _trailing_mean(values: np.ndarray, origins: np.ndarray, width: int) -> np.ndarray:
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    start = np.maximum(origins + 1 - width, 0)
    return (cumulative[origins + 1] - cumulative[start]) / (origins + 1 - start)


# Periods a window's own scale averages over (a quarter of weekly data).
WINDOW_SCALE_WIDTH = 13


def _trailing_known_mean(values: np.ndarray, origins: np.ndarray, width: int) -> np.ndarray:
    """Per origin ``t``: the mean of the finite values of ``values[t - width + 1 : t + 1]``,
    NaN where none is finite."""
    known = np.isfinite(values)
    totals = np.concatenate([[0.0], np.cumsum(np.where(known, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(known)])
    origins = np.asarray(origins, dtype=np.int64)
    start = np.maximum(origins + 1 - width, 0)
    n = counts[origins + 1] - counts[start]
    return np.divide(totals[origins + 1] - totals[start], n,
                     out=np.full(len(origins), np.nan), where=n > 0)


def window_scales(values: np.ndarray, origins: np.ndarray,
                  width: int = WINDOW_SCALE_WIDTH) -> np.ndarray:
    """Per origin ``t``: the mean absolute known value of ``values[t - width + 1 : t + 1]``,
    the window's own level (DeepAR-style mean scaling); 1 where none is known or it is 0.
    Computed from the input window alone, so a model scaled this way releases no
    per-series statistic: the scale is recomputed from the series' history when serving."""
    level = np.nan_to_num(_trailing_known_mean(np.abs(values), origins, width))
    return np.where(level > 0, level, 1.0)


def window_covariates(history: np.ndarray, origins: np.ndarray, at_target: np.ndarray, *,
                      numeric: np.ndarray, width: int = WINDOW_SCALE_WIDTH) -> np.ndarray:
    """Each pair's covariates at its target date (``at_target``, one row per pair) read
    against the series' own recent values (``history``: the series' covariates by
    position, read at positions ``<= origin`` only): a numeric column (``numeric`` True) as
    ``asinh(x)`` at the target minus the mean of ``asinh(x)`` over the known values of
    ``[origin - width + 1, origin]`` (a change from the window's level on a public log-like
    scale: a holiday flag reads about 0.9, a price 10 % above its recent level about 0.1,
    whatever the column's units); the others (one-hot levels) as they are. Unknown values
    read 0. Like :func:`window_scales`, nothing here is fitted: a model reading covariates
    this way releases no statistic of them."""
    out = np.nan_to_num(np.asarray(at_target, dtype=float), nan=0.0)
    for column in np.flatnonzero(numeric):
        level = _trailing_known_mean(np.arcsinh(np.asarray(history[:, column], dtype=float)),
                                     origins, width)
        change = np.arcsinh(np.asarray(at_target[:, column], dtype=float)) - level
        out[:, column] = np.nan_to_num(change, nan=0.0)
    return out


def window_features(
    *, scaled: np.ndarray, origins: np.ndarray, steps: np.ndarray, target_calendar: np.ndarray,
    target_covariates: np.ndarray, config: WindowConfig,
) -> np.ndarray:
    """Features of the (origin, step) pairs of one series; reads ``scaled[: origin + 1]`` only.

    ``scaled`` holds the series' known values divided by its training scale;
    ``target_calendar``/``target_covariates`` describe each pair's target time.
    """
    n = len(origins)
    history = np.nan_to_num(scaled)
    lag_index = origins[:, None] - np.arange(config.n_lags)[None, :]
    lags = history[np.maximum(lag_index, 0)]
    rolling = np.stack([_trailing_mean(history, origins, 4),
                        _trailing_mean(history, origins, 13)], axis=1)
    # The same means one season earlier: with them the model can read year-on-year growth
    # and scale the seasonal values by it.
    earlier = origins - config.season
    has_earlier = (config.season > 1) & (earlier >= 0)
    safe = np.clip(earlier, 0, None)
    rolling_earlier = np.where(has_earlier[:, None], np.stack(
        [_trailing_mean(history, safe, 4), _trailing_mean(history, safe, 13)], axis=1), rolling)
    naive = history[origins]
    seasonal_cols = []
    available = np.zeros(n)
    for offset in (-1, 0, 1):
        index = origins + steps - config.season + offset
        valid = (config.season > 1) & (index >= 0) & (index <= origins)
        seasonal_cols.append(np.where(valid, history[np.clip(index, 0, None)], naive))
        if offset == 0:
            available = valid.astype(float)
    one_hot = np.zeros((n, config.horizon))
    one_hot[np.arange(n), steps - 1] = 1.0
    covariates = np.nan_to_num(target_covariates, nan=0.0)
    return np.concatenate(
        [lags, rolling, rolling_earlier, np.stack(seasonal_cols, axis=1), available[:, None],
         target_calendar,
         covariates, one_hot], axis=1,
    ).astype(np.float32)


def baseline_forecasts(
    values: np.ndarray, origins: np.ndarray, steps: np.ndarray, season: int
) -> dict[str, np.ndarray]:
    """Forecasts of ``values[origin + step]``: ``naive`` (last known value),
    ``seasonal_naive`` (same period last season, falling back to naive when that is not
    yet known) and ``seasonal_drift`` (the seasonal naive forecast plus the change of the
    series' mean over its last ``WINDOW_SCALE_WIDTH`` known periods since the same time
    last season: last year's week, shifted by this year's growth; the seasonal naive
    forecast where a season earlier is not known). Each reads the series' own values up to
    its origin only."""
    naive = values[origins]
    index = origins + steps - season
    valid = (season > 1) & (index >= 0) & (index <= origins)
    seasonal = np.where(valid, values[np.clip(index, 0, None)], naive)
    # The change of the series' level (its mean over the last WINDOW_SCALE_WIDTH periods)
    # since the same time last season.
    earlier = origins - season
    change = (_trailing_known_mean(values, origins, WINDOW_SCALE_WIDTH)
              - _trailing_known_mean(values, np.clip(earlier, 0, None), WINDOW_SCALE_WIDTH))
    change = np.where(valid & (earlier >= 0) & np.isfinite(change), change, 0.0)
    return {"naive": naive.astype(float), "seasonal_naive": seasonal.astype(float),
            "seasonal_drift": (seasonal + change).astype(float)}


def mase_scale(train_values: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast (naive when the series is too short
    for a season), the MASE denominator of one series."""
    m = season if len(train_values) > season else 1
    if len(train_values) <= m:
        return float("nan")
    diffs = np.abs(train_values[m:] - train_values[:-m])
    return float(np.nanmean(diffs))


def forecast_metrics(
    *, y_true: np.ndarray, y_pred: np.ndarray, scales: np.ndarray
) -> dict[str, float]:
    """MAE, RMSE, WAPE (sum |error| / sum |actual|) and MASE (mean of |error| divided by
    each point's series' in-sample seasonal-naive MAE)."""
    error = y_pred - y_true
    absolute = np.abs(error)
    total = float(np.abs(y_true).sum())
    good = np.isfinite(scales) & (scales > 0)
    return {
        "mae": float(absolute.mean()),
        "rmse": float(np.sqrt((error ** 2).mean())),
        "wape": float(absolute.sum() / total) if total > 0 else float("nan"),
        "mase": float((absolute[good] / scales[good]).mean()) if good.any() else float("nan"),
    }
