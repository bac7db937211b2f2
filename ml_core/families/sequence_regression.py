"""Remaining useful life from run-to-failure series (task SEQUENCE_REGRESSION, family
"sequence_regressor").

Upload: one row per (unit, cycle). Roles: ``unit`` (engine or machine id) and ``cycle``
(cycle number or operating hours); the target column (RUL in cycles) is optional. Features:
``mapping.features`` when given, else every *numeric* column that is not the target, unit,
cycle, id, excluded or audited (``mapping.sensitive``); text columns are left out.

Target. When ``mapping.target`` names a column of the frame, its values are the RUL. When it
does not (empty, or absent from the file), RUL is computed per unit as ``max_cycle - cycle``:
right only when every unit ran until it failed (run-to-failure data, as in C-MAPSS training
files). Either way it is capped at ``train.rul_cap`` (the usual piecewise-linear target:
early in life the sensors cannot tell 200 cycles left from 300), and metrics compare with
the capped truth.

Windows. Every row ends one window of ``train.window`` rows of its unit (the unit's
earlier rows; a shorter history is left-padded with its first row). Channels: the features,
filled with training medians and standardised with training statistics, plus the row's
position in its unit's series (1, 2, ...; the unit's age in readings).

Privacy. The unit (machine) is the privacy unit. A private run fits nothing on the rows:
each machine's channels are centred and scaled by that machine's own first ``window``
readings (:class:`MachineBaseline`, recomputed from the machine's history when
predicting; the joint-DP pattern), so the SGD steps get the whole budget
(:class:`ml_core.person_privacy.PrivatePlan`). It samples units (not windows) at the
accountant's rate, one window of a drawn unit per step
(:class:`ml_core.sampling.PersonExamples`), and releases the last epoch's weights.

Split by unit (no unit has rows on both sides): test and validation units are drawn with
the seed (``train.test_fraction``, ``train.val_fraction`` of the units, at least one each);
every window of a test unit is judged. **A given test set**: a frame may carry a column
``__split__`` (:data:`SPLIT_COLUMN`) whose value ``"test"`` marks the rows of held-out
units (truncated series, C-MAPSS ``test_FD00x``): those units form the test set and are
judged on their **last** row only (the NASA protocol) when :func:`attach_test_set` built the
frame from a training frame, a test frame and the true RUL per test unit (``RUL_FD00x``;
such units are renamed ``test:...``), on **every** row when a labelled test file of whole
held-out units came with its own RUL column or ran to failure
(:func:`ml_core.data.attach_labelled_test`; a unit in both files is refused). The other
units are split into training and validation.

Model: :class:`ml_core.models.sequence_regressor.SequenceRegressor` (1-D CNN; Opacus-ready),
trained on ``RUL / rul_cap - 0.5`` (a public centring, so that an untrained or heavily
noised model starts at half the cap, not at 0) with mean squared error (mean-reduced,
matching Opacus' ``loss_reduction="mean"``), early stopping on validation RMSE (non-private
runs). Predictions are clipped to ``[0, rul_cap]``.

Metrics: RMSE (primary), MAE and the NASA asymmetric score ``sum(exp(-d/13) - 1 if d < 0
else exp(d/10) - 1)`` with ``d = predicted - true`` (late predictions cost more), on the
judged windows. Baselines on the same windows:

* ``mean_rul``: the mean capped RUL of all training windows, for every window;
* ``last_value``: for a window ending at position ``p`` of its unit, the mean capped RUL
  that the training units still running at position ``p`` had there: the last value of the
  training units' life curve at that age (mean residual life); beyond the oldest training
  unit, the curve's last value is carried forward. It knows the unit's age and nothing of
  its sensors, so beating it shows what the sensors add.

Fairness: error by group (MAE, RMSE, bias) per sensitive column (production line, machine
type) via :func:`ml_core.group_metrics.regression_by_group`, labelled operational.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ml_core import fairness, group_metrics
from ml_core.data import SPLIT_COLUMN, TEST_SPLIT, given_test_units
from ml_core.families.base import (
    MetricDeclaration,
    ModelFamily,
    Supports,
    register_family,
)
from ml_core.families.module_artifacts import load_module, save_module
from ml_core.families.tensor_training import FittedModule, fit_module
from ml_core.models.sequence_regressor import SequenceRegressor
from ml_core.person_privacy import PrivatePlan, person_batch_size
from ml_core.privacy_statement import privacy_notes
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
    ProblemSpec,
    TaskType,
    TrainConfig,
)
from ml_core.validation import ValidationIssue

MODEL_FAMILY = "sequence_regressor"
METRICS = ("rmse", "nasa_score", "mae")
BASELINES = ("last_value", "mean_rul")
# Test units are renamed so that C-MAPSS' test unit 1 is not training unit 1.
TEST_UNIT_PREFIX = "test:"
MIN_UNITS = 3
CHART_UNITS = 6


# --- metrics ---------------------------------------------------------------------------


def nasa_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """NASA's asymmetric scoring function (PHM08 / C-MAPSS): with ``d = y_pred - y_true``,
    the sum of ``exp(-d / 13) - 1`` for early predictions (d < 0) and ``exp(d / 10) - 1``
    for late ones (d >= 0). Lower is better; 0 for perfect predictions."""
    d = np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0) - 1, np.exp(d / 10.0) - 1)))


def rul_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``rmse``, ``nasa_score`` and ``mae`` (in cycles) as plain floats."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    error = y_pred - y_true
    return {
        "rmse": float(np.sqrt(np.mean(error ** 2))) if len(error) else math.nan,
        "nasa_score": nasa_score(y_true, y_pred),
        "mae": float(np.mean(np.abs(error))) if len(error) else math.nan,
    }


# --- a given test set --------------------------------------------------------------------


def attach_test_set(
    frame: pd.DataFrame, test_frame: pd.DataFrame, truth: pd.Series | Sequence[float], *,
    unit: str, cycle: str, target: str | None = None,
) -> pd.DataFrame:
    """One frame for :func:`run` from run-to-failure training data and a held-out test set.

    ``test_frame`` holds truncated series of other units (same columns); ``truth`` the
    true RUL at each test unit's **last** cycle: a Series indexed by unit id, or a sequence
    in the order of the test units sorted by id (C-MAPSS ``RUL_FD00x.txt``: one number a
    line, units 1, 2, ...). Test rows get ``RUL = truth + (last cycle - cycle)`` in the
    ``target`` column (default ``"rul"``; training rows without one get ``max_cycle -
    cycle``), ``__split__ = "test"``, and unit ids prefixed ``"test:"``. The index is
    0..n-1 (training rows first).
    """
    target = target or "rul"
    train_part = frame.copy()
    if target not in train_part.columns:
        last = train_part.groupby(unit)[cycle].transform("max")
        train_part[target] = last - train_part[cycle]
    train_part[SPLIT_COLUMN] = "train"
    test_part = test_frame.copy()
    units = sorted(pd.unique(test_part[unit]), key=_unit_sort_key)
    if isinstance(truth, pd.Series):
        final = {u: float(truth.loc[u]) for u in units}
    else:
        values = list(np.asarray(truth, dtype=float).ravel())
        if len(values) != len(units):
            raise ValueError(f"{len(values)} true RUL values for {len(units)} test units")
        final = dict(zip(units, values, strict=True))
    last_cycle = test_part.groupby(unit)[cycle].transform("max")
    test_part[target] = test_part[unit].map(final) + (last_cycle - test_part[cycle])
    test_part[unit] = TEST_UNIT_PREFIX + test_part[unit].astype(str)
    test_part[SPLIT_COLUMN] = TEST_SPLIT
    train_part[unit] = train_part[unit].astype(str)
    return pd.concat([train_part, test_part], ignore_index=True)


def _unit_sort_key(value: object) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


# --- preparing ---------------------------------------------------------------------------


def sequence_feature_columns(frame: pd.DataFrame, mapping: ColumnMapping) -> tuple[str, ...]:
    """``mapping.features`` when given, else the numeric columns not mapped to another role."""
    if mapping.features:
        return tuple(mapping.features)
    skipped = {mapping.target, *mapping.exclude, *mapping.sensitive, SPLIT_COLUMN,
               *(column for _, column in mapping.roles)}
    if mapping.id:
        skipped.add(mapping.id)
    return tuple(
        str(column) for column in frame.columns
        if column not in skipped and pd.api.types.is_numeric_dtype(frame[column])
        and not pd.api.types.is_bool_dtype(frame[column])
    )


@dataclass(frozen=True)
class Prepared:
    """The frame sorted by (unit, cycle), as arrays; ``starts[i]`` is the first row of
    row i's unit."""

    frame: pd.DataFrame  # sorted
    units: np.ndarray  # unit id (str) per row
    cycles: np.ndarray
    positions: np.ndarray  # 1-based position of the row in its unit's series
    starts: np.ndarray
    features: np.ndarray  # raw float features, NaN where missing
    feature_columns: tuple[str, ...]
    target: np.ndarray  # capped RUL
    target_source: str  # "column" or "computed"
    given_test: frozenset[str] | None  # the units of a given test set
    cap: float


def _roles(mapping: ColumnMapping) -> tuple[str, str]:
    unit, cycle = mapping.role("unit"), mapping.role("cycle")
    if unit is None or cycle is None:
        raise ValueError("the sequence_regressor family needs the roles 'unit' and 'cycle'")
    return unit, cycle


def prepare(frame: pd.DataFrame, mapping: ColumnMapping, *, cap: float,
            feature_columns: tuple[str, ...] | None = None, need_target: bool = True
            ) -> Prepared:
    """Sort by unit and cycle, read features and the (capped) target."""
    unit_column, cycle_column = _roles(mapping)
    columns = feature_columns or sequence_feature_columns(frame, mapping)
    table = frame.assign(__unit=frame[unit_column].astype(str),
                         __cycle=pd.to_numeric(frame[cycle_column], errors="coerce"))
    table = table[table["__cycle"].notna()]
    table = table.sort_values(["__unit", "__cycle"], kind="stable")
    units = table["__unit"].to_numpy()
    cycles = table["__cycle"].to_numpy(dtype=float)
    n = len(table)
    first = np.r_[True, units[1:] != units[:-1]] if n else np.zeros(0, bool)
    starts = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, int)
    positions = np.arange(n) - starts + 1
    features = np.column_stack(
        [pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float) for c in columns]
    ) if columns else np.zeros((n, 0))
    if mapping.target and mapping.target in table.columns:
        raw = pd.to_numeric(table[mapping.target], errors="coerce").to_numpy(dtype=float)
        source = "column"
    else:
        if not need_target:
            raw = np.full(n, np.nan)
        else:
            raw = table.groupby("__unit")["__cycle"].transform("max").to_numpy() - cycles
        source = "computed"
    given_test = given_test_units(table, "__unit", noun="units")
    return Prepared(
        frame=table.drop(columns=["__unit", "__cycle"]), units=units, cycles=cycles,
        positions=positions, starts=starts, features=features, feature_columns=tuple(columns),
        target=np.minimum(raw, cap), target_source=source, given_test=given_test,
        cap=float(cap),
    )


@dataclass(frozen=True)
class Scaler:
    """Training-unit statistics: medians fill gaps, then (x - mean) / scale."""

    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    position_mean: float
    position_scale: float
    # Channels fed to the model (False: left out as zeros); None: all of them.
    used: np.ndarray | None = None

    @classmethod
    def fit(cls, prepared: Prepared, rows: np.ndarray) -> Scaler:
        values = prepared.features[rows]
        medians = np.nan_to_num(np.nanmedian(values, axis=0)) if len(values) else \
            np.zeros(values.shape[1])
        filled = np.where(np.isnan(values), medians, values)
        std = filled.std(axis=0)
        position = prepared.positions[rows].astype(float)
        return cls(medians=medians, means=filled.mean(axis=0),
                   scales=np.where(std > 1e-12, std, 1.0),
                   position_mean=float(position.mean()),
                   position_scale=float(position.std()) or 1.0)

    def channels(self, prepared: Prepared) -> np.ndarray:
        filled = np.where(np.isnan(prepared.features), self.medians, prepared.features)
        scaled = (filled - self.means) / self.scales
        if self.used is not None:
            scaled[:, ~self.used] = 0.0
        position = (prepared.positions - self.position_mean) / self.position_scale
        return np.column_stack([scaled, position]).astype(np.float32)

    def to_dict(self) -> dict:
        return {"medians": self.medians.tolist(), "means": self.means.tolist(),
                "scales": self.scales.tolist(), "position_mean": self.position_mean,
                "position_scale": self.position_scale,
                **({"used": self.used.tolist()} if self.used is not None else {})}

    @classmethod
    def from_dict(cls, data: dict) -> Scaler:
        return cls(medians=np.asarray(data["medians"], float),
                   means=np.asarray(data["means"], float),
                   scales=np.asarray(data["scales"], float),
                   position_mean=float(data["position_mean"]),
                   position_scale=float(data["position_scale"]),
                   used=(np.asarray(data["used"], dtype=bool) if data.get("used") is not None
                         else None))


@dataclass(frozen=True)
class MachineBaseline:
    """A private model's channels, computed from each machine's own readings only (the
    joint-DP pattern: nothing fitted on the rows is released). Each reading is centred by
    the mean of its machine's first ``readings`` readings (fewer while the machine has
    not had them yet: only readings up to the row itself are read) and divided by their
    standard deviation: how far the machine has drifted from its own early, healthy state,
    in units of its own early spread. Clipped to ``clip``; a channel with no spread yet, or
    missing, reads 0. The position is divided by ``position_scale`` (the declared RUL cap).
    All three settings are public."""

    readings: int
    position_scale: float
    clip: float = 10.0

    def channels(self, prepared: Prepared) -> np.ndarray:
        x = prepared.features
        known = np.isfinite(x)
        # Differences from the machine's first reading keep the running sums small (raw
        # sensor values near 8,000 would lose the variance to rounding).
        first = np.nan_to_num(x[prepared.starts])
        d = np.where(known, x - first, 0.0)
        zero = np.zeros((1, x.shape[1]))
        sums = np.concatenate([zero, np.cumsum(d, axis=0)])
        squares = np.concatenate([zero, np.cumsum(d * d, axis=0)])
        counts = np.concatenate([zero, np.cumsum(known, axis=0)])
        start = prepared.starts
        end = start + np.minimum(prepared.positions, self.readings)
        n = counts[end] - counts[start]
        mean = np.divide(sums[end] - sums[start], n, out=np.zeros_like(d), where=n > 0)
        variance = np.divide(squares[end] - squares[start], n, out=np.zeros_like(d),
                             where=n > 0) - mean ** 2
        std = np.sqrt(np.maximum(variance, 0.0))
        spread = std > 1e-9 * (1.0 + np.abs(first + mean))
        scaled = np.divide(d - mean, std, out=np.zeros_like(d), where=spread & known)
        scaled = np.clip(scaled, -self.clip, self.clip)
        position = prepared.positions / self.position_scale
        return np.column_stack([scaled, position]).astype(np.float32)

    def to_dict(self) -> dict:
        return {"readings": self.readings, "position_scale": self.position_scale,
                "clip": self.clip}

    @classmethod
    def from_dict(cls, data: dict) -> MachineBaseline:
        return cls(readings=int(data["readings"]),
                   position_scale=float(data["position_scale"]), clip=float(data["clip"]))


def windows(channels: np.ndarray, prepared: Prepared, rows: np.ndarray, window: int
            ) -> np.ndarray:
    """``(len(rows), window, n_channels)``: the ``window`` rows of the same unit ending at
    each of ``rows``; rows before the unit's first are its first row (padding)."""
    offsets = np.arange(window - 1, -1, -1)
    index = rows[:, None] - offsets[None, :]
    index = np.maximum(index, prepared.starts[rows][:, None])
    return channels[index]


# --- splitting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitSplit:
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray  # the judged windows' last rows
    test_unit_rows: np.ndarray  # every row of the test units (for the charts)
    summary: dict


def split_by_unit(prepared: Prepared, train: TrainConfig, *,
                  given_test: frozenset[str] | None = None) -> UnitSplit:
    """Units drawn into training, validation and test with ``train.seed``; with
    ``given_test`` (the units of a given test set) those are the test part and the other
    units are drawn into training and validation. See the module docstring."""
    all_units = np.array(sorted(set(prepared.units), key=_unit_sort_key), dtype=object)
    rng = np.random.default_rng(train.seed)
    given = bool(given_test)
    if given:
        test_units = np.array(sorted(given_test), dtype=object)
        rest = np.array([u for u in all_units if u not in set(test_units)], dtype=object)
        if len(rest) < 2:
            raise ValueError("need at least 2 training units besides the test set")
        rest = rest[rng.permutation(len(rest))]
        n_val = max(1, int(round(train.val_fraction * len(rest))))
        val_units, train_units = rest[:n_val], rest[n_val:]
    else:
        if len(all_units) < MIN_UNITS:
            raise ValueError(f"need at least {MIN_UNITS} units to split by unit, "
                             f"got {len(all_units)}")
        shuffled = all_units[rng.permutation(len(all_units))]
        n_test = max(1, int(round(train.test_fraction * len(shuffled))))
        n_val = max(1, int(round(train.val_fraction * len(shuffled))))
        n_test = min(n_test, len(shuffled) - 2)
        n_val = min(n_val, len(shuffled) - n_test - 1)
        test_units = shuffled[:n_test]
        val_units = shuffled[n_test:n_test + n_val]
        train_units = shuffled[n_test + n_val:]

    def rows_of(units: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(prepared.units, units))

    test_unit_rows = rows_of(test_units)
    # Units attached with their true values at the last cycle (attach_test_set renames
    # them) are judged there, as in the NASA protocol; a labelled test file's units on every
    # row, each of which carries its own target.
    if given and all(str(u).startswith(TEST_UNIT_PREFIX) for u in test_units):
        last = np.r_[prepared.units[1:] != prepared.units[:-1], True]
        test_rows = test_unit_rows[last[test_unit_rows]]
        evaluation = "last_cycle_per_unit"
    else:
        test_rows = test_unit_rows
        evaluation = "every_cycle"
    train_rows, val_rows = rows_of(train_units), rows_of(val_units)
    summary = {
        "method": "given_test_set" if given else "by_unit", "seed": int(train.seed),
        "evaluation": evaluation,
        "train_units": len(train_units), "val_units": len(val_units),
        "test_units": len(test_units),
        "train": int(len(train_rows)), "val": int(len(val_rows)), "test": int(len(test_rows)),
        "test_unit_ids": [str(u) for u in sorted(test_units, key=_unit_sort_key)],
    }
    return UnitSplit(train_rows=train_rows, val_rows=val_rows, test_rows=test_rows,
                     test_unit_rows=test_unit_rows, summary=summary)


# --- baselines -----------------------------------------------------------------------------


def life_curve(prepared: Prepared, rows: np.ndarray) -> np.ndarray:
    """Mean capped RUL of the training rows at each position 1..max (index 0 unused)."""
    positions = prepared.positions[rows]
    totals = np.bincount(positions, weights=prepared.target[rows])
    counts = np.bincount(positions)
    curve = np.divide(totals, counts, out=np.full(len(totals), np.nan), where=counts > 0)
    # Positions no training unit had (gaps cannot occur; kept for safety): carry forward.
    return pd.Series(curve).ffill().bfill().to_numpy()


def baseline_predictions(prepared: Prepared, split: UnitSplit, rows: np.ndarray
                         ) -> dict[str, np.ndarray]:
    """``last_value`` and ``mean_rul`` predictions for ``rows`` (see the module docstring)."""
    curve = life_curve(prepared, split.train_rows)
    positions = np.minimum(prepared.positions[rows], len(curve) - 1)
    mean = float(prepared.target[split.train_rows].mean())
    return {"last_value": curve[positions], "mean_rul": np.full(len(rows), mean)}


# --- training ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tensors:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: np.ndarray


# The training target is RUL / cap minus this (public) offset; added back when predicting.
TARGET_OFFSET = 0.5


def _predict(model: nn.Module, x: torch.Tensor, cap: float,
             offset: float = TARGET_OFFSET) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        scaled = torch.cat([model(part) for part in torch.split(x, 4096)]) if len(x) else \
            torch.zeros(0)
    return np.clip((scaled.double().numpy() + offset) * cap, 0.0, cap)


def _fit(*, tensors: Tensors, n_channels: int, train: TrainConfig, cap: float,
         call: FitCall, privacy: PrivacyConfig | None, persons: np.ndarray | None
         ) -> FittedModule:
    hidden = tuple(train.hidden_sizes) or (32,)
    channels, head = int(hidden[0]), int(hidden[-1])

    def build() -> nn.Module:
        return SequenceRegressor(n_channels, window=train.window, channels=channels,
                                 hidden=head)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch
        # Mean-reduced: matches Opacus' loss_reduction="mean".
        return nn.functional.mse_loss(model(x), y, reduction="mean")

    def val_score(model: nn.Module) -> float:
        predicted = _predict(model, tensors.x_val, cap)
        return -float(np.sqrt(np.mean((predicted - tensors.y_val) ** 2)))

    return fit_module(build=build, tensors=(tensors.x_train, tensors.y_train), loss_fn=loss_fn,
                      val_score=val_score, train=train, privacy=privacy,
                      stage=call.stage, progress=call.progress, should_stop=call.should_stop,
                      checkpoint_path=call.checkpoint_path, persons=persons,
                      # A private model is its last DP-SGD step's (no epoch chosen on
                      # private validation units).
                      select_on_validation=privacy is None)


# --- reporting -----------------------------------------------------------------------------



def _groups(prepared: Prepared, rows: np.ndarray, mapping: ColumnMapping, spec: ProblemSpec
            ) -> pd.DataFrame:
    table = prepared.frame.iloc[rows]
    present = [c for c in mapping.sensitive if c in table.columns]
    return pd.DataFrame(
        {c: fairness.band(table[c], spec.banding_for(c)).to_numpy() for c in present},
        columns=present, index=range(len(rows)),
    )


def _fairness(*, y_true: np.ndarray, y_pred: np.ndarray, groups: pd.DataFrame,
              spec: ProblemSpec) -> dict:
    return group_metrics.regression_by_group(
        y_true=y_true, y_pred=y_pred, sensitive=groups,
        kind=spec.fairness.kind,
        min_group_size=spec.fairness.min_group_size,
    )


def _plain(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _charts(*, prepared: Prepared, split: UnitSplit, predicted: np.ndarray,
            baseline: np.ndarray, baseline_name: str) -> dict:
    """Per test unit (the first few by id): true and predicted RUL at every cycle."""
    rows = split.test_unit_rows
    units = prepared.units[rows]
    chosen = sorted(set(units), key=_unit_sort_key)[:CHART_UNITS]
    curves = []
    for unit in chosen:
        mine = units == unit
        curves.append({
            "unit": str(unit),
            "cycles": [_plain(c) for c in prepared.cycles[rows][mine]],
            "true": [_plain(v) for v in prepared.target[rows][mine]],
            "predicted": [_plain(v) for v in predicted[mine]],
            "baseline": [_plain(v) for v in baseline[mine]],
        })
    return {"rul": curves, "baseline_name": baseline_name, "rul_cap": prepared.cap}


def _predictions(*, prepared: Prepared, rows: np.ndarray, predicted: np.ndarray,
                 baselines: dict[str, np.ndarray], baseline_name: str,
                 groups: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({
        "row_id": prepared.frame.index.to_numpy()[rows],
        "unit": prepared.units[rows],
        "cycle": prepared.cycles[rows],
        "y_true": prepared.target[rows],
        "y_pred": predicted,
        "baseline": baselines[baseline_name],
        **{name: values for name, values in baselines.items()},
    })
    return with_groups(table, groups)


def _notes(*, prepared: Prepared, split: UnitSplit, privacy: PrivacyConfig, train: TrainConfig,
           mapping: ColumnMapping, fitted: FittedModule, dropped_text: list[str]) -> list[str]:
    s = split.summary
    if s["method"] == "given_test_set":
        judged = ("each judged on its last cycle, as in the NASA benchmark"
                  if s["evaluation"] == "last_cycle_per_unit" else "every row judged")
        notes = [f"Split: the given test set ({s['test_units']} units, {judged}); the other "
                 f"units were split into {s['train_units']} for training and "
                 f"{s['val_units']} for validation."]
    else:
        notes = [f"Split by unit: {s['train_units']} units for training, {s['val_units']} "
                 f"for validation, {s['test_units']} for test; no unit has cycles on both "
                 "sides, so the test measures unseen machines. Every cycle of a test unit "
                 "is judged."]
    if prepared.target_source == "computed":
        notes.append("No RUL column: RUL was computed per unit as last cycle - cycle, which "
                     "assumes every unit ran until it failed.")
    notes.append(f"RUL capped at {train.rul_cap:g} cycles; windows of {train.window} cycles "
                 "(shorter histories padded with their first reading)"
                 + ("." if privacy.enabled else
                    "; features standardised with training-unit statistics."))
    notes.append("Baselines: 'last_value' predicts the mean RUL the training units had at "
                 "the same age (position in their series); 'mean_rul' predicts the mean "
                 "training RUL everywhere.")
    if dropped_text:
        notes.append(f"Text columns left out of the features: {', '.join(dropped_text)}.")
    if privacy.enabled:
        notes.append("Differential privacy is on, per machine: machines (not windows) are "
                     "sampled, a drawn machine brings one of its windows to a step, and each "
                     "machine's channels are centred and scaled by its own first "
                     f"{train.window} readings (nothing fitted on the rows is released). "
                     "The 1-D CNN needed no Opacus fix (Conv1d, ReLU, Linear).")
    else:
        notes.append("Differential privacy is off by default: machine sensor data are not "
                     "personal. It can be switched on.")
    if mapping.sensitive:
        notes.append("Error by group compares production lines or machine types: an "
                     "operational disparity, not a personal one.")
    notes.extend(fitted.notes)
    return notes


# --- the entry point -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunData:
    """What the RUL model's hooks share: the cycles, the split by unit, the windows."""

    prepared: Prepared
    split: UnitSplit
    scaler: Scaler | MachineBaseline  # MachineBaseline: a private run's
    tensors: Tensors
    x_test: torch.Tensor
    x_chart: torch.Tensor  # every cycle of the test units (the chart's curves)
    y_test: np.ndarray
    groups: pd.DataFrame  # banded sensitive attributes per test row, by position
    plan: PrivatePlan | None = None  # a private run's preprocessing and SGD budget


# The artifact key of each kind of channel scaling (a private model's: public settings).
SCALING_KEY = {Scaler: "scaler", MachineBaseline: "baseline"}


@dataclass(frozen=True)
class Baselines:
    name: str  # the one the result reports
    test: dict[str, np.ndarray]  # every baseline's predictions on the test rows


class SequenceRegressorHooks(FamilyHooks):
    """The remaining-useful-life model's hooks (see the module docstring)."""

    def prepare(self, inputs: RunInputs) -> RunData:
        train, cap = inputs.train, float(inputs.train.rul_cap)
        prepared = prepare(inputs.frame, inputs.mapping, cap=cap)
        if np.isnan(prepared.target).any():
            raise ValueError("the RUL target has missing or non-numeric values")
        split = split_by_unit(prepared, train, given_test=prepared.given_test)
        plan = (_private_plan(inputs, prepared, n_units=len(set(prepared.units)))
                if inputs.privacy.enabled else None)
        # A private model's channels come from each machine's own readings: no statistic
        # of the rows is released, so the SGD steps get the whole budget.
        scaler = (MachineBaseline(readings=int(train.window), position_scale=cap)
                  if plan is not None else Scaler.fit(prepared, split.train_rows))
        channels = scaler.channels(prepared)
        tensors = Tensors(
            x_train=torch.from_numpy(windows(channels, prepared, split.train_rows,
                                             train.window)),
            y_train=torch.from_numpy((prepared.target[split.train_rows] / cap - TARGET_OFFSET)
                                     .astype(np.float32)),
            x_val=torch.from_numpy(windows(channels, prepared, split.val_rows, train.window)),
            y_val=prepared.target[split.val_rows],
        )
        return RunData(
            prepared=prepared, split=split, scaler=scaler, tensors=tensors,
            x_test=torch.from_numpy(windows(channels, prepared, split.test_rows, train.window)),
            x_chart=torch.from_numpy(windows(channels, prepared, split.test_unit_rows,
                                             train.window)),
            y_test=prepared.target[split.test_rows],
            groups=_groups(prepared, split.test_rows, inputs.mapping, inputs.spec),
            plan=plan,
        )

    def baseline(self, inputs: RunInputs, prepared: RunData) -> Baseline:
        spec, names = inputs.spec, _metric_names(inputs.spec)
        baselines = baseline_predictions(prepared.prepared, prepared.split,
                                         prepared.split.test_rows)
        metrics = {name: rul_metrics(prepared.y_test, values)
                   for name, values in baselines.items()}
        name = spec.baseline if spec.baseline in BASELINES else "last_value"
        return Baseline(report={"name": name, "metrics": {n: metrics[name][n] for n in names},
                                "baselines": metrics},
                        detail=Baselines(name=name, test=baselines))

    def fit(self, inputs: RunInputs, prepared: RunData, call: FitCall) -> Fitted:
        plan = prepared.plan if call.privacy is not None else None
        units = prepared.prepared.units[prepared.split.train_rows]

        # Machines per batch: few machines still get several batches (amplification).
        train = (inputs.train if plan is None else dataclasses.replace(
            inputs.train, batch_size=person_batch_size(inputs.train.batch_size,
                                                       len(set(units)))))

        def fit(privacy: PrivacyConfig | None) -> Fitted:
            fitted = _fit(tensors=prepared.tensors,
                          n_channels=prepared.tensors.x_train.shape[2], train=train,
                          cap=float(inputs.train.rul_cap), call=call, privacy=privacy,
                          persons=units if privacy is not None else None)
            return Fitted.of(fitted, model=fitted.module)

        if plan is None:
            return fit(call.privacy)
        sgd = plan.sgd_for(n_units=len(set(units)), train=train)
        return plan.charged(fit, sgd=sgd, spec=inputs.spec, mapping=inputs.mapping)

    def evaluate(self, inputs: RunInputs, prepared: RunData, fitted: Fitted) -> Evaluation:
        predicted = _predict(fitted.model, prepared.x_test, float(inputs.train.rul_cap))
        metrics = rul_metrics(prepared.y_test, predicted)
        return Evaluation(
            metrics={name: metrics[name] for name in _metric_names(inputs.spec)},
            fairness=_fairness(y_true=prepared.y_test, y_pred=predicted,
                               groups=prepared.groups, spec=inputs.spec),
            detail=predicted)

    def split(self, inputs: RunInputs, prepared: RunData) -> dict:
        return prepared.split.summary

    def save(self, inputs: RunInputs, prepared: RunData, model: Fitted,
             evaluation: Evaluation, *, directory: Path, metadata: dict) -> Saved:
        cycles = prepared.prepared
        saved = save_module(module=model.model, directory=directory, metadata=json_ready({
            "model_family": MODEL_FAMILY, **metadata,
            "feature_columns": list(cycles.feature_columns),
            SCALING_KEY[type(prepared.scaler)]: prepared.scaler.to_dict(),
            "window": inputs.train.window,
            "rul_cap": float(inputs.train.rul_cap), "target_source": cycles.target_source,
            "target_offset": TARGET_OFFSET,
            # Counts only: the test machines' ids stay in the run's result (curator's eyes).
            "split": {key: value for key, value in prepared.split.summary.items()
                      if key != "test_unit_ids"},
            "device": model.device,
        }))
        return Saved(path=saved.path, sha256=saved.sha256)

    def predictions(self, inputs: RunInputs, prepared: RunData, baseline: Baseline,
                    evaluation: Evaluation) -> pd.DataFrame:
        return _predictions(prepared=prepared.prepared, rows=prepared.split.test_rows,
                            predicted=evaluation.detail, baselines=baseline.detail.test,
                            baseline_name=baseline.detail.name, groups=prepared.groups)

    def charts(self, inputs: RunInputs, prepared: RunData, baseline: Baseline, model: Fitted,
               evaluation: Evaluation) -> dict:
        split, name = prepared.split, baseline.detail.name
        return _charts(
            prepared=prepared.prepared, split=split,
            predicted=_predict(model.model, prepared.x_chart, float(inputs.train.rul_cap)),
            baseline=baseline_predictions(prepared.prepared, split,
                                          split.test_unit_rows)[name],
            baseline_name=name)

    def notes(self, inputs: RunInputs, prepared: RunData, model: Fitted, twin: Fitted | None,
              evaluation: Evaluation) -> list[str]:
        mapping, cycles = inputs.mapping, prepared.prepared
        dropped_text = [str(c) for c in inputs.frame.columns
                        if not mapping.features and str(c) not in cycles.feature_columns
                        and str(c) not in {mapping.target, *mapping.exclude,
                                           *mapping.sensitive, SPLIT_COLUMN, mapping.id or "",
                                           *(col for _, col in mapping.roles)}]
        return [*privacy_notes(model.privacy),
                *_notes(prepared=cycles, split=prepared.split, privacy=inputs.privacy,
                        train=inputs.train, mapping=mapping, fitted=model.trained,
                        dropped_text=dropped_text)]


# What a private run releases besides the weights, and what it declares public.
PUBLIC = ("the confirmed mapping and feature columns", "window, RUL cap and training settings",
          "whether the target was computed", "unit, row and window counts of the split",
          "each channel's centre and scale: computed from the machine's own first readings "
          "when predicting (nothing fitted on the rows); the position scaled by the "
          "declared RUL cap")
CURATOR_ONLY = ("the baselines (life curve, mean RUL)", "the non-private twin",
                "error by group", "test metrics and the test units' ids")


def _private_plan(inputs: RunInputs, prepared: Prepared, *, n_units: int) -> PrivatePlan:
    unit_column, _ = _roles(inputs.mapping)
    return PrivatePlan.for_units(
        privacy=inputs.privacy, unit_column=unit_column, n_units=n_units,
        n_histograms=0, n_categorical=0, max_rows=int(inputs.privacy.max_rows_per_person),
        released={}, public=PUBLIC, curator_only=CURATOR_ONLY, examples_per_step=1,
        gradient="one of the machine's windows per step, its gradient clipped to "
                 "max_grad_norm: the machine's whole contribution to the step")


run = family_runner(SequenceRegressorHooks(), doc="""Train, evaluate against the baselines,
audit error by group, and save an RUL model.

Same contract as :func:`ml_core.pipeline.run_training`; see the module docstring.
""")


def _metric_names(spec: ProblemSpec) -> tuple[str, ...]:
    """The spec's metrics this family computes (all three when it names none of them)."""
    named = tuple(name for name in spec.metrics if name in METRICS)
    return named or METRICS


# --- reloading and scoring -----------------------------------------------------------------


@dataclass(frozen=True)
class LoadedSequenceRegressor:
    model: SequenceRegressor
    metadata: dict


def load(path: Path | str) -> LoadedSequenceRegressor:
    """Restore a saved RUL model (eval mode, CPU); checks the weights' sha256."""
    model, metadata = load_module(path, SequenceRegressor)
    return LoadedSequenceRegressor(model=model, metadata=metadata)


def predict(loaded: LoadedSequenceRegressor, frame: pd.DataFrame) -> pd.DataFrame:
    """Predicted RUL for every row of ``frame`` (units' series up to that row).

    ``frame`` needs the unit, cycle and feature columns the model was trained with. Returns
    ``row_id`` (the frame's index), ``unit``, ``cycle``, ``y_pred`` (cycles, in
    ``[0, rul_cap]``), sorted by unit and cycle; a unit's current RUL is its last row.
    """
    meta = loaded.metadata
    mapping = ColumnMapping.from_dict(meta["mapping"])
    cap = float(meta["rul_cap"])
    prepared = prepare(frame, mapping, cap=cap,
                       feature_columns=tuple(meta["feature_columns"]), need_target=False)
    scaler = (MachineBaseline.from_dict(meta["baseline"]) if "baseline" in meta
              else Scaler.from_dict(meta["scaler"]))
    channels = scaler.channels(prepared)
    rows = np.arange(len(prepared.units))
    x = torch.from_numpy(windows(channels, prepared, rows, int(meta["window"])))
    return pd.DataFrame({
        "row_id": prepared.frame.index.to_numpy(),
        "unit": prepared.units,
        "cycle": prepared.cycles,
        # Models saved before the offset was introduced were trained on RUL / cap.
        "y_pred": _predict(loaded.model, x, cap, float(meta.get("target_offset", 0.0))),
    })


# --- validating ----------------------------------------------------------------------------


def validate(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
             ) -> list[ValidationIssue]:
    """RUL checks beyond the generic ones (which this family does not need for the target:
    it is optional). Errors: ``unit_required``/``cycle_required``, ``unknown_column``,
    ``cycle_not_numeric``, ``target_not_numeric``, ``negative_target``,
    ``missing_target_values``, ``too_few_units``, ``no_features``, ``test_file_mismatch``
    (a unit in both the training and a given test file). Warnings:
    ``duplicate_cycles``, ``target_computed``."""
    issues: list[ValidationIssue] = []
    present = set(map(str, frame.columns))
    unit, cycle = mapping.role("unit"), mapping.role("cycle")
    if unit is None:
        issues.append(ValidationIssue(code="unit_required",
                                      message="Choose the unit column (role 'unit'): the "
                                              "engine or machine each row belongs to."))
    if cycle is None:
        issues.append(ValidationIssue(code="cycle_required",
                                      message="Choose the cycle column (role 'cycle'): the "
                                              "cycle number or operating hours."))
    for role, column in (("unit", unit), ("cycle", cycle)):
        if column is not None and column not in present:
            issues.append(ValidationIssue(code="unknown_column", column=column,
                                          message=f"The {role} column '{column}' is not in "
                                                  "the file."))
    if issues:
        return issues
    cycles = pd.to_numeric(frame[cycle], errors="coerce")
    bad = cycles.isna()
    if bad.any():
        rows = tuple(int(p) + 1 for p in np.flatnonzero(bad.to_numpy())[:20])
        issues.append(ValidationIssue(code="cycle_not_numeric", column=cycle, rows=rows,
                                      message=f"Column '{cycle}' needs numbers; {int(bad.sum())}"
                                              " rows have none."))
    if mapping.target and mapping.target in present:
        target = pd.to_numeric(frame[mapping.target], errors="coerce")
        if frame[mapping.target].notna().any() and target.notna().sum() == 0:
            issues.append(ValidationIssue(code="target_not_numeric", column=mapping.target,
                                          message=f"The RUL column '{mapping.target}' holds "
                                                  "no numbers."))
        elif target.isna().any():
            rows = tuple(int(p) + 1 for p in np.flatnonzero(target.isna().to_numpy())[:20])
            issues.append(ValidationIssue(code="missing_target_values", column=mapping.target,
                                          rows=rows,
                                          message=f"Column '{mapping.target}' has no number in "
                                                  f"{int(target.isna().sum())} rows."))
        if (target < 0).any():
            rows = tuple(int(p) + 1 for p in np.flatnonzero((target < 0).to_numpy())[:20])
            issues.append(ValidationIssue(code="negative_target", column=mapping.target,
                                          rows=rows,
                                          message=f"Column '{mapping.target}' has negative "
                                                  "remaining life."))
    elif mapping.target:
        issues.append(ValidationIssue(code="unknown_column", column=mapping.target,
                                      message=f"The RUL column '{mapping.target}' is not in "
                                              "the file."))
    else:
        issues.append(ValidationIssue(
            code="target_computed", severity="warning",
            message="No RUL column: RUL will be computed as last cycle - cycle per unit, "
                    "which assumes every unit ran until it failed."))
    try:
        given_test_units(frame, unit, noun="units")
    except ValueError as exc:
        issues.append(ValidationIssue(code="test_file_mismatch", column=unit,
                                      message=f"The given test file does not fit: {exc}."))
    units = frame[unit].astype(str)
    n_units = units.nunique()
    if SPLIT_COLUMN not in present and n_units < MIN_UNITS:
        issues.append(ValidationIssue(code="too_few_units", column=unit,
                                      message=f"{n_units} units; splitting by unit needs at "
                                              f"least {MIN_UNITS}."))
    duplicated = pd.DataFrame({"u": units, "c": cycles}).duplicated(keep=False)
    if duplicated.any():
        rows = tuple(int(p) + 1 for p in np.flatnonzero(duplicated.to_numpy())[:20])
        issues.append(ValidationIssue(code="duplicate_cycles", column=cycle, rows=rows,
                                      severity="warning",
                                      message="Some (unit, cycle) pairs occur more than once; "
                                              "their rows are kept in file order."))
    unknown = [c for c in mapping.features if c not in present]
    for column in unknown:
        issues.append(ValidationIssue(code="unknown_column", column=column,
                                      message=f"The feature column '{column}' is not in the "
                                              "file."))
    if not unknown and not sequence_feature_columns(frame, mapping):
        issues.append(ValidationIssue(code="no_features",
                                      message="No numeric sensor columns to learn from."))
    return issues


# --- registration -----------------------------------------------------------------------


@register_family
class SequenceRegressorFamily(ModelFamily):
    name = MODEL_FAMILY
    task_types = (TaskType.SEQUENCE_REGRESSION,)
    # The target (RUL) may be computed from the run-to-failure cycles; the sensor channels
    # are the mapped features, or every numeric column without another role.
    required_roles = (ColumnRole.UNIT.value, ColumnRole.CYCLE.value)
    optional_roles = (ColumnRole.TARGET.value, ColumnRole.FEATURE.value, ColumnRole.ID.value)
    numeric_features_only = True
    metrics = (
        MetricDeclaration("rmse", higher_is_better=False),
        MetricDeclaration("nasa_score", higher_is_better=False),
        MetricDeclaration("mae", higher_is_better=False),
    )
    primary_metric = "rmse"
    chart_kinds = ("rul_curve",)
    # A given test set: held-out units with true values at their last cycle
    # (attach_test_set), or a labelled test file of other units (their own RUL column, or
    # run to failure); a unit in both files is refused (ml_core.data.given_test_units).
    supports = Supports(test_file=True, labelled_test_file=True)
    implementation = __name__
    artifact_public = frozenset({"feature_columns", "window", "rul_cap", "target_source",
                                 "target_offset", "baseline", "split"})
    # A private artifact's channels are each machine's own (MachineBaseline: "baseline",
    # public settings); "scaler" is the non-private twin's and a non-private model's.
    artifact_private = {}
