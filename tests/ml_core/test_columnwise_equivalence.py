"""Column-wise encoding, banding and label counts give exactly what the per-row definitions give.

The reference below is the definition the encoder had before it was vectorised: every
cell through ``label_text`` (missing -> "missing"), levels kept at MIN_LEVEL_COUNT rows,
unseen and rare levels in "other", numbers imputed with the training median and
standardised in float64.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_core import data, fairness, profiling
from ml_core.data import MIN_LEVEL_COUNT, MISSING_LEVEL, OTHER_LEVEL, TabularEncoder, label_text


def per_row_levels(series: pd.Series) -> pd.Series:
    return series.astype("object").map(lambda v: MISSING_LEVEL if pd.isna(v) else label_text(v))


def reference_transform(encoder: TabularEncoder, frame: pd.DataFrame) -> np.ndarray:
    blocks = []
    raw = {c: pd.to_numeric(frame[c], errors="coerce").astype("float64") for c in encoder.numeric}
    for column in encoder.numeric:
        values = raw[column].fillna(encoder.medians[column]).to_numpy(dtype=np.float64)
        blocks.append(((values - encoder.means[column]) / encoder.scales[column])[:, None])
    for column in encoder.with_missing_indicator:
        blocks.append(raw[column].isna().to_numpy(dtype=np.float64)[:, None])
    for column in encoder.categorical:
        kept = encoder.levels[column]
        position = {level: i for i, level in enumerate(kept)}
        codes = per_row_levels(frame[column]).map(position).fillna(len(kept))
        one_hot = np.zeros((len(frame), len(kept) + 1))
        one_hot[np.arange(len(frame)), codes.to_numpy(dtype=np.int64)] = 1.0
        blocks.append(one_hot)
    return np.hstack(blocks).astype(np.float32)


def messy_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.standard_normal(n) * 100
    amount[rng.random(n) < 0.1] = np.nan
    mixed = rng.choice(np.array([1, 2, 2.0, "2", " 3 ", None, np.nan, "x"], dtype=object), n)
    flags = rng.choice(np.array([True, False, 1, 0, 1.0, None], dtype=object), n)
    return pd.DataFrame({
        "amount": amount,
        "count": rng.integers(0, 9, n),
        "approved": rng.random(n) < 0.3,
        "nullable": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 4, n)),
                             dtype="Int64"),
        "text_numbers": pd.Series(rng.integers(0, 5, n)).astype(str).to_numpy(dtype=object),
        "purpose": rng.choice(["car", "house", "rare", "education", None], n,
                              p=[0.4, 0.3, 0.002, 0.2, 0.098]),
        "mixed": mixed,
        "flags": flags,
        "strings": pd.Series(rng.choice(["a", "b", "c"], n), dtype="str"),
    })


@pytest.mark.parametrize("seed", [0, 1])
def test_columnwise_transform_equals_the_per_row_definition(seed):
    frame = messy_frame(3000, seed)
    train, new = frame.iloc[:2000], messy_frame(500, seed + 10)
    new.loc[new.index[:7], "purpose"] = "never seen"
    encoder = TabularEncoder.fit(train, tuple(frame.columns))
    assert set(encoder.numeric) == {"amount", "count", "approved", "nullable"}
    assert set(encoder.categorical) == {"text_numbers", "purpose", "mixed", "flags", "strings"}
    for rows in (train, new, new.iloc[:0]):
        got = encoder.transform(rows)
        assert got.dtype == np.float32 and got.shape == (len(rows), encoder.n_features)
        np.testing.assert_array_equal(got, reference_transform(encoder, rows))


def test_levels_are_counted_like_the_per_row_definition():
    frame = messy_frame(3000, 2)
    for column in ("purpose", "mixed", "flags", "strings"):
        expected = per_row_levels(frame[column]).value_counts()
        kept = sorted(str(v) for v, n in expected.items() if n >= MIN_LEVEL_COUNT)
        encoder = TabularEncoder.fit(frame, (column,))
        assert list(encoder.levels[column]) == [v for v in kept if v != OTHER_LEVEL]
        assert data.level_counts(frame[column]) == {str(k): int(v) for k, v in expected.items()}


def test_booleans_mixed_with_numbers_keep_their_own_levels():
    # Python hashes True like 1: these must stay "true" and "1", not merge.
    series = pd.Series([True, 1, 1.0, False, 0, None], dtype=object)
    codes, names = data._level_codes(series)
    assert [names[c] for c in codes] == ["true", "1", "1", "false", "0", MISSING_LEVEL]


def per_row_band(series: pd.Series) -> list[str]:
    """fairness.band's definition for unbanded text and few-valued numbers."""
    out = []
    for v in series:
        if pd.isna(v):
            out.append(fairness.MISSING_GROUP)
        elif isinstance(v, str):
            out.append(v.strip())
        else:
            out.append(fairness._fmt(v) if pd.api.types.is_numeric_dtype(series)
                       else str(v).strip())
    return out


@pytest.mark.parametrize("values", [
    [" female", "male ", None, "female", "x"],
    pd.Series(["a", "b", None, "a"], dtype="str"),
    [1, 2.0, None, True, "a"],  # mixed kinds: the per-row path
    [1.0, 2.0, -0.0, 0.0, 2.5, np.nan],  # few distinct numbers, no banding
])
def test_band_of_text_and_few_valued_numbers_is_the_per_row_definition(values):
    series = pd.Series(values)
    assert fairness.band(series, None).tolist() == per_row_band(series)


def test_profile_counts_labels_like_the_per_row_definition():
    frame = messy_frame(3000, 3)
    for column in ("purpose", "mixed", "flags", "strings"):
        expected = frame[column].dropna().map(label_text).value_counts()
        top = profiling._top_values(frame[column])
        assert {value: count for value, count in top} == {
            str(k): int(v) for k, v in expected.iloc[:profiling.TOP_VALUES].items()}
        assert [count for _, count in top] == sorted((c for _, c in top), reverse=True)
