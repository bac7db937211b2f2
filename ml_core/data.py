"""DataFrame -> model-ready arrays for tabular binary classification.

Everything learnt from data (medians, scales, category levels) is fitted on the training
rows only, after the split, so nothing of the validation or test rows leaks into the model.

Default features: every column except the target, the id, the excluded columns *and the
sensitive ones*. Protected attributes are not fed to the model unless the analyst lists them
in ``mapping.features`` explicitly. Leaving them out ("fairness through unawareness") does
not make a model fair, because other columns can stand in for them; that is why every model
is audited per group afterwards. It does keep the platform from using them by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ml_core import cancellation
from ml_core.code_hierarchies import grouped_features
from ml_core.column_types import typed_column
from ml_core.private_statistics import (
    PreprocessingNoise,
    contribution_weights,
    person_codes,
    private_numeric,
    private_refined,
    private_vocabulary,
    private_whitening,
)
from ml_core.spec import ColumnMapping, TargetRule, TrainConfig
from ml_core.tables import factorize

# A given test file's rows are marked "test" in this column (bookkeeping, never a feature).
SPLIT_COLUMN = "__split__"
TEST_SPLIT = "test"
MISSING_LEVEL = "missing"
OTHER_LEVEL = "other"
# A category level seen fewer times than this in the training rows goes to "other":
# a one-hot column for a handful of rows mostly memorises those rows.
MIN_LEVEL_COUNT = 5
# A categorical column with more distinct levels than this (diagnosis codes, postcodes) is
# hashed into buckets instead of one-hot encoded: the width of one-hot grows with the data,
# and under DP-SGD every extra weight takes noise.
MAX_ONE_HOT_LEVELS = 50


def label_text(value: object) -> str:
    """A target value as text, so that ``2``, ``2.0`` and ``"2"`` name the same class."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    return str(value).strip()


def feature_columns(frame: pd.DataFrame, mapping: ColumnMapping) -> tuple[str, ...]:
    """The columns fed to the model: ``mapping.features`` when given, else all but the
    target, id, excluded and sensitive columns (see the module docstring for why)."""
    if mapping.features:
        return tuple(mapping.features)
    skipped = {mapping.target, *mapping.exclude, *mapping.sensitive, SPLIT_COLUMN,
               *mapping.role_columns("privacy_unit")}  # who a row is, never an input
    if mapping.id:
        skipped.add(mapping.id)
    return tuple(str(column) for column in frame.columns if column not in skipped)


def attach_labelled_test(frame: pd.DataFrame, test_frame: pd.DataFrame) -> pd.DataFrame:
    """One frame of ``frame``'s rows then a given test file's (which carries its own target),
    the latter marked ``SPLIT_COLUMN == "test"``: :func:`encode_and_split` then tests on
    exactly those rows, as a published benchmark split asks. ValueError when the test file
    lacks columns of the training file. The index is 0..n-1, training rows first."""
    missing = [str(c) for c in frame.columns if c not in test_frame.columns]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5])
        raise ValueError(f"the test file has no column {shown}"
                         f"{' and more' if len(missing) > 5 else ''}; it needs the training "
                         "file's columns, target included")
    train_part = frame.copy()
    train_part[SPLIT_COLUMN] = "train"
    test_part = test_frame[list(frame.columns)].copy()
    test_part[SPLIT_COLUMN] = TEST_SPLIT
    combined = pd.concat([train_part, test_part], ignore_index=True)
    # What the training frame declares (a public item catalogue) holds for both parts.
    combined.attrs.update(frame.attrs)
    return combined


def given_test_rows(frame: pd.DataFrame) -> np.ndarray | None:
    """Which rows of ``frame`` came from a given test file (:func:`attach_labelled_test`
    marks them); None when it has none."""
    if SPLIT_COLUMN not in frame.columns:
        return None
    marked = frame[SPLIT_COLUMN].astype(str).str.lower().eq(TEST_SPLIT).to_numpy()
    return marked if marked.any() else None


def listed(values: list, limit: int = 5) -> str:
    """``values`` quoted for a message, the first ``limit`` of them."""
    shown = ", ".join(repr(value) for value in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def given_test_units(frame: pd.DataFrame, column: str, *, noun: str = "units"
                     ) -> frozenset[str] | None:
    """The units (students, machines, ...) of a given test file's rows, as ``column`` names
    them (text); None without one. The sequence families' split hooks take these as their
    test part. ValueError naming the units that have rows in both files: a given test file
    holds other units, so that the test measures the model on units it has never seen."""
    marked = given_test_rows(frame)
    if marked is None:
        return None
    names = frame[column].astype("object").map(str).to_numpy()
    present = frame[column].notna().to_numpy()
    tested, trained = set(names[marked & present]), set(names[~marked])
    both = sorted(tested & trained)
    if both:
        raise ValueError(f"{len(both)} {noun} have rows in both the training and the test "
                         f"file ({listed(both)}); a given test file holds other {noun}, "
                         "so remove them from one of the files")
    return frozenset(tested)


def positive_label(target: pd.Series, mapping: ColumnMapping) -> str:
    """``mapping.positive_label`` when set, else the minority class of ``target``.

    A tie goes to the label that sorts last (``1`` over ``0``, ``yes`` over ``no``).
    """
    if mapping.positive_label is not None:
        return label_text(mapping.positive_label)
    counts = target.dropna().map(label_text).value_counts()
    if counts.empty:
        raise ValueError(f"target column {mapping.target!r} has no values")
    smallest = counts.min()
    return sorted(label for label, count in counts.items() if count == smallest)[-1]


def apply_target_rule(target: pd.Series, rule: TargetRule) -> pd.Series:
    """``target``'s numbers as ``rule.positive_text`` / ``rule.negative_text`` labels.

    Missing values stay missing (they are dropped like any missing target); a value that
    is not a number raises ``ValueError`` naming it (validation reports such rows first).
    """
    numbers = pd.to_numeric(target, errors="coerce")
    bad = numbers.isna() & target.notna()
    if bad.any():
        examples = ", ".join(repr(v) for v in pd.unique(target[bad])[:3])
        raise ValueError(f"target values are not numbers: {examples}")
    positive = numbers < rule.threshold if rule.positive_below else numbers >= rule.threshold
    labels = pd.Series(np.where(positive, rule.positive_text, rule.negative_text),
                       index=target.index, dtype=object, name=target.name)
    return labels.where(numbers.notna())


@dataclass(frozen=True)
class BinaryTarget:
    """A target column as two labels, its positive label, and how it was made binary."""

    labels: pd.Series  # missing values stay missing
    positive: str
    rule: str  # plain words for the report, e.g. "fail = G3 < 10, pass = G3 >= 10"


def binary_target(target: pd.Series, mapping: ColumnMapping, *,
                  default_rule: TargetRule | None = None) -> BinaryTarget:
    """``target`` as two classes, in whatever encoding it came.

    In order: the analyst's ``mapping.target_rule`` (a numeric target cut at a threshold);
    the analyst's ``mapping.positive_labels`` (those labels against all others, for a
    multi-class outcome such as Graduate / Dropout / Enrolled); a column that already holds
    two values (0/1, yes/no, true/false, two labels) as it is, its positive label being
    ``mapping.positive_label`` or the minority class; else a numeric column cut by
    ``default_rule`` (the problem's suggestion, which the suggested mapping shows the analyst).
    Anything else is returned as it is, for :func:`encode_target` to refuse.
    """
    name = mapping.target or str(target.name)
    rule = mapping.target_rule
    present = target.dropna()
    distinct = present.map(label_text).nunique() if len(present) else 0
    if rule is None and not mapping.positive_labels and distinct > 2 and default_rule is not None:
        if pd.to_numeric(present, errors="coerce").notna().all():
            rule = default_rule
    if rule is not None:
        labels = apply_target_rule(target, rule)
        positive = (label_text(mapping.positive_label)
                    if mapping.positive_label in (rule.positive_text, rule.negative_text)
                    else rule.positive_text)
        return BinaryTarget(labels, positive, rule.describe(name))
    # One label of a two-valued target just names its positive class.
    if len(mapping.positive_labels) == 1 and distinct <= 2:
        mapping = replace(mapping, positive_label=mapping.positive_labels[0], positive_labels=())
    if mapping.positive_labels:
        chosen = [label_text(label) for label in mapping.positive_labels]
        positive = " or ".join(chosen)
        negative = f"not {positive}"
        texts = target.map(label_text, na_action="ignore")
        labels = pd.Series(np.where(texts.isin(chosen), positive, negative), index=target.index,
                           dtype=object, name=target.name).where(target.notna())
        return BinaryTarget(labels, positive,
                            f"{positive} = positive class ({name} is "
                            f"{' or '.join(repr(c) for c in chosen)}), every other value "
                            "negative")
    positive = positive_label(target, mapping) if len(present) else ""
    return BinaryTarget(target, positive, f"{name} as given (positive class '{positive}')")


def encode_target(target: pd.Series, positive: str) -> np.ndarray:
    """1 where the label is ``positive``, else 0 (missing values must be dropped before)."""
    labels = target.map(label_text)
    classes = set(labels)
    if len(classes) > 2:
        raise ValueError(f"target is not binary: {len(classes)} classes {sorted(classes)[:5]}")
    if positive not in classes:
        raise ValueError(f"positive label {positive!r} is not a value of the target")
    return (labels == positive).to_numpy(dtype=np.int64)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _as_float(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        series = series.astype("Float64")
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _float_values(series: pd.Series) -> np.ndarray:
    """:func:`_as_float` as a numpy array, without a copy when it is float64 already."""
    if series.dtype == np.float64:
        return series.to_numpy()
    return _as_float(series).to_numpy(dtype=np.float64)


def _level_codes(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's category level as a code into the returned level names (missing values
    are ``MISSING_LEVEL``); the names may repeat (``2`` and ``"2"`` are one level).

    :func:`label_text` runs once per distinct value, not once per row. Hashing would merge
    ``True`` with ``1`` (equal in Python), whose texts differ, so a column that mixes kinds
    of values (which is how booleans and numbers can meet) takes the per-row path.
    """
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("mixed", "mixed-integer"):
        labels = series.astype("object").map(
            lambda v: MISSING_LEVEL if pd.isna(v) else label_text(v))
        codes, names = pd.factorize(labels)
        return codes, [str(name) for name in names]
    codes, uniques = factorize(series)
    values = list(uniques)
    if kind == "string":  # label_text of a string is the string stripped
        names = [str(v).strip() for v in values]
    else:
        names = [label_text(v) for v in values]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(MISSING_LEVEL)
    return codes, names


def level_counts(series: pd.Series) -> dict[str, int]:
    """How many rows hold each category level (see :func:`_level_codes`), levels in order
    of first appearance."""
    codes, names = _level_codes(series)
    counts = np.bincount(codes, minlength=len(names)).tolist()
    if len(set(names)) == len(names):
        return dict(zip(names, counts, strict=True))
    merged: dict[str, int] = {}
    for name, n in zip(names, counts, strict=True):
        merged[name] = merged.get(name, 0) + n
    return merged


@dataclass(frozen=True)
class TabularEncoder:
    """A fitted, picklable and JSON-able feature encoder.

    Numeric columns: median imputation, a missing-value indicator (for columns that had
    gaps in the training rows) and standardisation. Categorical columns: one-hot over the
    levels seen at least ``MIN_LEVEL_COUNT`` times in training, plus an ``other`` bucket for
    rare and unseen levels.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    medians: Mapping[str, float]
    means: Mapping[str, float]
    scales: Mapping[str, float]
    with_missing_indicator: tuple[str, ...]
    levels: Mapping[str, tuple[str, ...]]
    feature_names: tuple[str, ...] = field(default=())
    # The analyst's column kinds (ml_core.column_types), applied before encoding.
    column_types: Mapping[str, str] = field(default_factory=dict)
    # Wide categorical columns, hashed (ml_core.code_hierarchies) with their declared
    # hierarchy ("icd9", "postcode") or None: no vocabulary is learnt for them.
    hashed: Mapping[str, str | None] = field(default_factory=dict)
    # Numeric columns read as asinh(value) before centring and scaling (a declared, public
    # transform): private encoders use it, so coarse DP statistics still give inputs of a
    # sane size, whatever the column's units.
    asinh: tuple[str, ...] = ()
    # The standardised numeric columns (in ``numeric``'s order) multiplied by this matrix
    # (rows: output features), a DP decorrelation (private_statistics.private_whitening);
    # empty: as they are.
    whitening: tuple[tuple[float, ...], ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical + tuple(self.hashed)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: tuple[str, ...], *,
            column_types: Mapping[str, str] | None = None,
            hierarchies: Mapping[str, str] | None = None) -> TabularEncoder:
        """Learn imputation values, scales and category levels from ``frame`` (training rows).

        ``column_types`` are the analyst's kinds (a numeric-looking code read as
        categorical); columns with a declared ``hierarchies`` kind, and categorical ones
        with more than ``MAX_ONE_HOT_LEVELS`` levels, are hashed instead of one-hot encoded.
        """
        column_types = dict(column_types or {})
        hierarchies = dict(hierarchies or {})
        numeric, categorical = [], []
        medians, means, scales, levels = {}, {}, {}, {}
        hashed: dict[str, str | None] = {}
        with_indicator = []
        for column in columns:
            series = typed_column(frame[column], column_types.get(column))
            if column in hierarchies or (
                    not _is_numeric(series) and series.nunique() > MAX_ONE_HOT_LEVELS):
                hashed[column] = hierarchies.get(column)
            elif _is_numeric(series):
                values = _as_float(series)
                median = float(values.median()) if values.notna().any() else 0.0
                filled = values.fillna(median)
                std = float(filled.std(ddof=0))
                numeric.append(column)
                medians[column] = median
                means[column] = float(filled.mean())
                # A constant column keeps scale 1: dividing by ~0 would blow up new values.
                scales[column] = std if std > 1e-12 else 1.0
                if values.isna().any():
                    with_indicator.append(column)
            else:
                counts = level_counts(series)
                kept = sorted(level for level, n in counts.items() if n >= MIN_LEVEL_COUNT)
                categorical.append(column)
                levels[column] = tuple(level for level in kept if level != OTHER_LEVEL)
        return cls.from_statistics(numeric=tuple(numeric), categorical=tuple(categorical),
                                   medians=medians, means=means, scales=scales,
                                   with_missing_indicator=tuple(with_indicator), levels=levels,
                                   column_types={c: k for c, k in column_types.items()
                                                 if c in columns},
                                   hashed=hashed)

    @classmethod
    def from_statistics(
        cls, *, numeric: tuple[str, ...], categorical: tuple[str, ...],
        medians: Mapping[str, float], means: Mapping[str, float], scales: Mapping[str, float],
        with_missing_indicator: tuple[str, ...], levels: Mapping[str, tuple[str, ...]],
        asinh: tuple[str, ...] = (), column_types: Mapping[str, str] | None = None,
        hashed: Mapping[str, str | None] | None = None,
        whitening: tuple[tuple[float, ...], ...] = (),
    ) -> TabularEncoder:
        """The encoder for statistics fitted elsewhere (exactly, or privately), with its
        feature names in the encoder's order."""
        names = list(numeric)
        names += [f"{column}__missing" for column in with_missing_indicator]
        for column in categorical:
            names += [f"{column}={level}" for level in levels[column]]
            names.append(f"{column}={OTHER_LEVEL}")
        hashed = dict(hashed or {})
        for column, hierarchy in hashed.items():
            names += _hashed_block(column, pd.Series([], dtype=object), hierarchy)[0]
        return cls(numeric=numeric, categorical=categorical, medians=medians, means=means,
                   scales=scales, with_missing_indicator=with_missing_indicator,
                   levels=levels, feature_names=tuple(names),
                   column_types=dict(column_types or {}), hashed=hashed, asinh=asinh,
                   whitening=tuple(tuple(float(v) for v in row) for row in whitening))

    def _typed(self, frame: pd.DataFrame, column: str) -> pd.Series:
        return typed_column(frame[column], self.column_types.get(column))

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` (any rows with the fitted columns) as a float32 matrix.

        Column-wise numpy with no per-row Python: each feature is written into one row of
        a feature-major buffer, and the (rows, features) result is its transposed view
        (torch and numpy take it as it is; ``np.ascontiguousarray`` makes it row-major).
        """
        missing = [column for column in self.columns if column not in frame.columns]
        if missing:
            raise KeyError(f"columns missing from the frame: {missing}")
        n = len(frame)
        out = np.empty((self.n_features, n), dtype=np.float32)
        indicator_rows = {column: len(self.numeric) + i
                          for i, column in enumerate(self.with_missing_indicator)}
        scratch = np.empty(n, dtype=np.float64)
        for row, column in enumerate(self.numeric):
            values = _float_values(self._typed(frame, column))
            if column in self.asinh:
                values = np.arcsinh(values)
            mean, scale = self.means[column], self.scales[column]
            # (values - mean) / scale in float64, rounded to float32 as it is written; gaps
            # then get the median's value, computed with the same float64 arithmetic.
            np.subtract(values, mean, out=scratch)
            np.divide(scratch, scale, out=out[row], casting="same_kind")
            gaps = np.isnan(values)
            if column in indicator_rows:
                out[indicator_rows[column]] = gaps
            if gaps.any():
                out[row][gaps] = (self.medians[column] - mean) / scale
        if self.whitening:
            d = len(self.numeric)
            out[:d] = np.asarray(self.whitening) @ out[:d].astype(np.float64)
        row = len(self.numeric) + len(self.with_missing_indicator)
        for column in self.categorical:
            kept = self.levels[column]
            # Unseen and rare levels map to the last column, "other".
            position = {level: i for i, level in enumerate(kept)}
            codes, names = _level_codes(self._typed(frame, column))
            lookup = np.array([position.get(name, len(kept)) for name in names] or [0],
                              dtype=np.int64)
            positions = lookup[codes]
            for level in range(len(kept) + 1):  # one 0/1 row per level, written in one pass
                np.equal(positions, level, out=out[row + level], casting="unsafe")
            row += len(kept) + 1
        for column, hierarchy in self.hashed.items():
            block = _hashed_block(column, self._typed(frame, column), hierarchy)[1]
            out[row:row + len(block)] = block
            row += len(block)
        return out.T

    def to_dict(self) -> dict:
        """JSON-ready form, saved with the model artifact (no pickle needed to load it)."""
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "medians": dict(self.medians),
            "means": dict(self.means),
            "scales": dict(self.scales),
            "with_missing_indicator": list(self.with_missing_indicator),
            "levels": {column: list(levels) for column, levels in self.levels.items()},
            "feature_names": list(self.feature_names),
            "column_types": dict(self.column_types),
            "hashed": dict(self.hashed),
            **({"asinh": list(self.asinh)} if self.asinh else {}),
            **({"whitening": [list(r) for r in self.whitening]} if self.whitening else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TabularEncoder:
        return cls(
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            medians=dict(data["medians"]),
            means=dict(data["means"]),
            scales=dict(data["scales"]),
            with_missing_indicator=tuple(data["with_missing_indicator"]),
            levels={column: tuple(levels) for column, levels in data["levels"].items()},
            feature_names=tuple(data["feature_names"]),
            column_types=dict(data.get("column_types") or {}),
            hashed=dict(data.get("hashed") or {}),
            asinh=tuple(data.get("asinh") or ()),
            whitening=tuple(tuple(float(v) for v in r) for r in data.get("whitening") or ()),
        )


def _hashed_block(column: str, values: pd.Series, hierarchy: str | None
                  ) -> tuple[list[str], np.ndarray]:
    """Feature names and (features, rows) values of a hashed column (no vocabulary)."""
    codes, uniques = factorize(values.astype(object).map(label_text, na_action="ignore"))
    return grouped_features(column=column, levels=[str(v) for v in uniques],
                            codes=np.asarray(codes), hierarchy=hierarchy)


def column_kinds(frame: pd.DataFrame, columns: tuple[str, ...], *,
                 column_types: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(numeric, categorical) counts of ``columns`` as the encoder will treat them; read from
    the columns' types (the schema the analyst confirmed, with the analyst's column kinds),
    not from their values."""
    column_types = dict(column_types or {})
    numeric = sum(_is_numeric(typed_column(frame[column], column_types.get(column)))
                  for column in columns)
    return numeric, len(columns) - numeric


def fit_private_encoder(
    frame: pd.DataFrame, columns: tuple[str, ...], *, persons: np.ndarray,
    noise: PreprocessingNoise, seed: int,
    column_types: Mapping[str, str] | None = None,
    hierarchies: Mapping[str, str] | None = None,
) -> TabularEncoder:
    """:meth:`TabularEncoder.fit` with differential privacy: every statistic from noisy,
    person-weighted histograms (:mod:`ml_core.private_statistics`), nothing exact.
    Numeric columns are read as ``asinh(value)`` (public; linear near 0, logarithmic far
    out), so the public grid and a coarse DP scale fit any column's units; a column in a
    narrow band far from 0 (kelvin, rpm) is read on its own scale from a second, fine and
    hierarchical DP histogram (:func:`ml_core.private_statistics.private_refined`).

    ``persons`` holds one person code per row of ``frame`` (the training rows). Numeric
    columns: the DP median imputes and centres, the DP interquartile range scales, and an
    indicator is added when the noisy share of gaps clears the threshold. Categorical
    columns: the levels whose noisy person weight clears the threshold; the rest go to
    ``other``. ``column_types`` are the analyst's kinds, applied first. Columns with a
    declared ``hierarchies`` kind are hashed (no statistic is learnt for them); unlike
    :meth:`TabularEncoder.fit`, a wide categorical column is not hashed on its count of
    levels (that count is not released): the noisy threshold keeps its frequent levels.
    """
    column_types = dict(column_types or {})
    hierarchies = dict(hierarchies or {})
    weights = contribution_weights(persons, max_rows=noise.max_rows, seed=seed)
    generator = np.random.Generator(np.random.PCG64([seed, 0x5EED]))
    numeric, categorical, levels = [], [], {}
    medians, scales, with_indicator = {}, {}, []
    linear: list[str] = []
    hashed: dict[str, str | None] = {}
    # A cancel is honoured between columns; a cancelled run releases none of these noisy
    # statistics (its model is never saved), so it reports nothing spent.
    for column in cancellation.checked(columns):
        series = typed_column(frame[column], column_types.get(column))
        if column in hierarchies:
            hashed[column] = hierarchies[column]
        elif _is_numeric(series):
            raw = _float_values(series)
            stats = private_numeric(np.arcsinh(raw), weights, noise=noise,
                                    generator=generator)
            fine = (private_refined(raw, weights, coarse=stats, noise=noise,
                                    generator=generator) if noise.refine_numeric else None)
            numeric.append(column)
            if fine is not None:  # a narrow band far from 0: read linearly, finely scaled
                linear.append(column)
                stats = fine
            medians[column], scales[column] = stats.median, stats.scale
            if stats.missing_indicator:
                with_indicator.append(column)
        else:
            codes, names = _level_codes(series)
            kept = private_vocabulary(np.asarray(names, dtype=object)[codes], weights,
                                      noise=noise,
                                      generator=generator)
            categorical.append(column)
            levels[column] = tuple(level for level in kept if level != OTHER_LEVEL)
    # The DP median is also the centre: a released mean would be one more statistic to
    # noise for little gain in a standardised input. All on the asinh scale.
    encoder = TabularEncoder.from_statistics(
        numeric=tuple(numeric), categorical=tuple(categorical), medians=medians,
        means=dict(medians), scales=scales, with_missing_indicator=tuple(with_indicator),
        levels=levels, asinh=tuple(c for c in numeric if c not in linear),
        column_types={c: k for c, k in column_types.items() if c in columns}, hashed=hashed)
    if not noise.whiten_numeric or not numeric:
        return encoder
    # The plan charged the second-moment matrix: it is always drawn (private_whitening).
    standardised = encoder.transform(frame)[:, :len(numeric)]
    whitening = private_whitening(standardised, weights, noise=noise, generator=generator)
    return replace(encoder, whitening=tuple(map(tuple, whitening.tolist())))


@dataclass(frozen=True)
class EncodedSplit:
    """Train/validation/test arrays, the original row ids of each part, and the encoder."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ids_train: np.ndarray  # values of the original frame's index
    ids_val: np.ndarray
    ids_test: np.ndarray
    encoder: TabularEncoder
    positive_label: str
    method: str  # "stratified", or "random" when a class is too small to stratify
    seed: int
    dropped_missing_target: int = 0
    # Per-row loss weights of the training rows (reweighing); None: every row weighs 1.
    w_train: np.ndarray | None = None
    # How the target became two classes, in plain words (the report states it).
    target_rule: str = ""
    # The privacy unit's column (None: each row is a person) and each training and
    # validation row's person code (codes index the frame's persons; rows as persons get
    # their own code each).
    person_column: str | None = None
    persons_train: np.ndarray | None = None
    persons_val: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_train_units(self) -> int:
        """The training persons (rows, when each row is a person): what DP-SGD samples."""
        if self.person_column is None or self.persons_train is None:
            return int(len(self.y_train))
        return int(len(np.unique(self.persons_train)))

    def summary(self) -> dict:
        """The split as it goes into the training result."""
        return {
            "method": self.method,
            "train": int(len(self.y_train)),
            "val": int(len(self.y_val)),
            "test": int(len(self.y_test)),
            "seed": int(self.seed),
            "positive_label": self.positive_label,
            "n_features": int(self.n_features),
            "dropped_missing_target": int(self.dropped_missing_target),
            "target_rule": self.target_rule,
            **({} if self.person_column is None or self.persons_train is None else {
                "by_person": self.person_column,
                "persons_train": int(len(np.unique(self.persons_train)))}),
        }


def without_whitening(split: EncodedSplit) -> EncodedSplit | None:
    """``split`` with its standardised numeric columns as they were before its encoder's
    decorrelation (``TabularEncoder.whitening`` solved back: what the encoder without it
    gives, to float32 rounding), and that encoder; None where the encoder has none. For a
    non-private model chosen on the validation rows (the twin,
    :func:`ml_core.trainer.train_model`); the private model keeps the decorrelation."""
    if not split.encoder.whitening:
        return None
    whitening = np.asarray(split.encoder.whitening, dtype=np.float64)
    d = len(split.encoder.numeric)

    def unwhitened(x: np.ndarray) -> np.ndarray:
        # Feature-major, as TabularEncoder.transform writes it; (rows, features) view.
        out = np.array(x.T, dtype=np.float32, order="C")
        out[:d] = np.linalg.solve(whitening, out[:d].astype(np.float64))
        return out.T

    return replace(split, x_train=unwhitened(split.x_train), x_val=unwhitened(split.x_val),
                   x_test=unwhitened(split.x_test),
                   encoder=replace(split.encoder, whitening=()))


def _split_positions(
    y: np.ndarray, *, test_fraction: float, val_fraction: float, seed: int,
    given_test: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    positions = np.arange(len(y))
    if given_test is not None and given_test.any():
        # The test rows are the given file's; validation comes from the training file only.
        test, rest = positions[given_test], positions[~given_test]
        share = min(val_fraction / (1.0 - test_fraction), 0.5)
        try:
            train, val = train_test_split(rest, test_size=share, random_state=seed,
                                          stratify=y[rest])
            return train, val, test, "given test file, stratified validation"
        except ValueError:
            train, val = train_test_split(rest, test_size=share, random_state=seed)
            return train, val, test, "given test file, random validation"
    val_share_of_rest = val_fraction / (1.0 - test_fraction)
    try:
        rest, test = train_test_split(
            positions, test_size=test_fraction, random_state=seed, stratify=y
        )
        train, val = train_test_split(
            rest, test_size=val_share_of_rest, random_state=seed, stratify=y[rest]
        )
        return train, val, test, "stratified"
    except ValueError:
        # A class with too few rows to appear in every part: fall back to a plain split
        # rather than fail; the result records the method used.
        rest, test = train_test_split(positions, test_size=test_fraction, random_state=seed)
        train, val = train_test_split(rest, test_size=val_share_of_rest, random_state=seed)
        return train, val, test, "random"


def split_by_person(
    persons: pd.Series, *, test_fraction: float, val_fraction: float, seed: int,
    given_test: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(train, validation, test positions, method) with every person in one part only.

    Each person's part is decided by a seeded hash of their id alone, so adding or removing
    one person moves nobody else (a stratified split would: it depends on everyone's labels),
    and the parts' sizes are the fractions in expectation. Rows with no person value are
    each a person of their own, placed by their position.

    With ``given_test`` (rows of a labelled test file) those rows are the test part, and the
    other rows are split into training and validation by person the same way (a person who
    appears in both files is the analyst's choice: the files are kept as given).
    """
    keys = persons.astype("string").fillna(
        pd.Series([f"\x00row{i}" for i in range(len(persons))], index=persons.index,
                  dtype="string"))
    hashed = pd.util.hash_pandas_object(
        keys, index=False, hash_key=f"{seed:016d}"[-16:]).to_numpy(dtype=np.uint64)
    u = (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)
    positions = np.arange(len(persons))
    if given_test is not None and given_test.any():
        share = min(val_fraction / (1.0 - test_fraction), 0.5)
        test = positions[given_test]
        val = positions[~given_test & (u < share)]
        train = positions[~given_test & (u >= share)]
        return train, val, test, "given test file, validation by person"
    test = positions[u < test_fraction]
    val = positions[(u >= test_fraction) & (u < test_fraction + val_fraction)]
    train = positions[u >= test_fraction + val_fraction]
    return train, val, test, "by_person"


def encode_and_split(
    frame: pd.DataFrame, mapping: ColumnMapping, train: TrainConfig, *,
    target_rule: TargetRule | None = None, person_column: str | None = None,
    private_noise: PreprocessingNoise | None = None,
) -> EncodedSplit:
    """Split ``frame`` (stratified on the target) and encode it with train-only statistics.

    With ``person_column`` (the privacy unit) the split is :func:`split_by_person`: each
    person's rows all land in one part. With ``private_noise`` the encoder is
    :func:`fit_private_encoder` (every released statistic DP, per person, or per row without
    a person column); without it the encoder's statistics are exact (non-private runs).

    Rows with no target value are dropped (validation reports them as errors first). The
    target becomes two classes by :func:`binary_target`, with ``target_rule`` (the
    problem's ``spec.target_rule``) as the rule for a numeric target when the mapping
    confirms none; the split's ``target_rule`` says which was used.
    """
    if mapping.target not in frame.columns:
        raise KeyError(f"target column {mapping.target!r} is not in the frame")
    columns = feature_columns(frame, mapping)
    unknown = [column for column in columns if column not in frame.columns]
    if unknown:
        raise KeyError(f"feature columns not in the frame: {unknown}")
    labelled = frame[frame[mapping.target].notna()]
    binary = binary_target(labelled[mapping.target], mapping, default_rule=target_rule)
    positive = binary.positive
    y = encode_target(binary.labels, positive)
    given_test = (labelled[SPLIT_COLUMN].astype(str).eq(TEST_SPLIT).to_numpy()
                  if SPLIT_COLUMN in labelled.columns else None)
    if person_column is not None:
        train_pos, val_pos, test_pos, method = split_by_person(
            labelled[person_column], test_fraction=train.test_fraction,
            val_fraction=train.val_fraction, seed=train.seed, given_test=given_test)
        persons = person_codes(labelled[person_column].to_numpy())[0]
    else:
        train_pos, val_pos, test_pos, method = _split_positions(
            y, test_fraction=train.test_fraction, val_fraction=train.val_fraction,
            seed=train.seed, given_test=given_test)
        persons = np.arange(len(labelled))
    if private_noise is not None:
        encoder = fit_private_encoder(labelled.iloc[train_pos], columns,
                                      persons=persons[train_pos], noise=private_noise,
                                      seed=train.seed,
                                      column_types=dict(mapping.column_types),
                                      hierarchies=dict(mapping.hierarchies))
    else:
        encoder = TabularEncoder.fit(labelled.iloc[train_pos], columns,
                                     column_types=dict(mapping.column_types),
                                     hierarchies=dict(mapping.hierarchies))
    ids = labelled.index.to_numpy()
    return EncodedSplit(
        x_train=encoder.transform(labelled.iloc[train_pos]),
        y_train=y[train_pos],
        x_val=encoder.transform(labelled.iloc[val_pos]),
        y_val=y[val_pos],
        x_test=encoder.transform(labelled.iloc[test_pos]),
        y_test=y[test_pos],
        ids_train=ids[train_pos],
        ids_val=ids[val_pos],
        ids_test=ids[test_pos],
        encoder=encoder,
        positive_label=positive,
        method=method,
        seed=train.seed,
        dropped_missing_target=int(len(frame) - len(labelled)),
        target_rule=binary.rule,
        person_column=person_column,
        persons_train=persons[train_pos],
        persons_val=persons[val_pos],
    )
