"""Public item features from a declared catalogue's attribute columns (recommendation).

A declared public catalogue (a restaurants, products or courses table the analyst uploads
as a companion file) names each item's public attributes: city, price band, cuisine,
latitude, ... Read from the catalogue alone (never from the private interactions), each
attribute column becomes a block of *levels*:

* a categorical column (text, or numbers with at most ``MAX_BINS`` distinct values): one
  level per value held by at least ``MIN_ITEMS`` catalogue items (a value held by one item
  is an id and says nothing about the others), the ``MAX_LEVELS`` most common; missing
  values (blank, ``?``, ``n/a``, ...) and rarer values are in no level;
* a numeric column (more distinct numbers than that, e.g. a latitude): ``MAX_BINS``
  quantile bins of the catalogue's values, each item in its bin.

A column is used when its levels cover at least ``MIN_COVERAGE`` of the catalogue's items
and it has two levels or more (so names, addresses and urls, nearly unique per item, are
left out).

Two tables per item, indexed like the model's vocabulary (row 0: no item): ``profile``, the
item's level (one-hot per column), and ``match``, which levels it matches: its own for a
categorical column, its bin and the neighbouring bins (a Gaussian kernel of width one bin)
for a numeric one. A user's profile is the mean ``profile`` row of their history (computed
when they are scored); feature ``c`` of item ``i`` for that user is
``sum over column c's levels of profile_l * match[i, l]``: the share of the user's history
sharing ``i``'s value (numeric: lying near it). :class:`ml_core.models.recommender.ItemFactors`
weighs these features with one weight per column, trained under the same DP-SGD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_ITEMS = 2
MAX_LEVELS = 50
MAX_BINS = 20
MIN_COVERAGE = 0.5
# A numeric column's neighbouring bins match with weight exp(-d^2 / 2), d bins apart, up to
# this many bins away.
KERNEL_BINS = 2
MISSING_TOKENS = frozenset({"", "?", "-", "na", "n/a", "nan", "null", "none given"})


@dataclass(frozen=True, eq=False)
class CatalogueAttributes:
    """A declared catalogue's attribute columns, one row per item id (text), kept as the
    analyst uploaded them. Carried on the interactions frame's ``attrs`` (pandas copies
    ``attrs`` deeply on every operation and compares them when concatenating: this one is
    immutable, so it is shared, and equal only to itself)."""

    table: pd.DataFrame  # indexed by item id (text), one column per attribute

    def __deepcopy__(self, memo: dict) -> CatalogueAttributes:
        return self

    @classmethod
    def of(cls, items: pd.Series, attributes: pd.DataFrame) -> CatalogueAttributes | None:
        """The attribute columns of ``attributes`` (rows aligned with ``items``, the id
        column left out), first row per id; None when none is left."""
        ids = pd.Series(list(items), dtype="object").astype("string").str.strip()
        columns = [c for c in attributes.columns
                   if not attributes[c].equals(items) and str(c) != str(items.name)]
        if not columns:
            return None
        table = attributes[columns].reset_index(drop=True).copy()
        table.index = pd.Index(ids.to_numpy(), dtype="object")
        keep = ids.notna().to_numpy() & (ids != "").to_numpy()
        table = table[keep]
        table = table[~table.index.duplicated()]
        return cls(table=table) if len(table) else None


@dataclass(frozen=True)
class ContentColumns:
    """The level tables of :func:`content_columns` for a vocabulary (row 0: no item)."""

    names: tuple[str, ...]  # the attribute columns used, one feature each
    profile: np.ndarray  # (n_items + 1, n_levels): the item's level, one-hot per column
    match: np.ndarray  # (n_items + 1, n_levels): the levels the item matches
    level_column: np.ndarray  # (n_levels,): the column (0..len(names)-1) of each level

    @property
    def n_levels(self) -> int:
        return int(self.profile.shape[1])


def _missing(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return values.isna() | text.isna() | text.str.lower().isin(MISSING_TOKENS)


def _numeric_bins(values: pd.Series) -> tuple[np.ndarray, int] | None:
    """Each item's quantile bin (-1: missing) and the number of bins, or None when the
    column is not numeric (most present values are not numbers) or has few values."""
    present = ~_missing(values)
    numbers = pd.to_numeric(values.where(present), errors="coerce")
    if present.sum() == 0 or numbers.notna().sum() < 0.9 * present.sum():
        return None
    if numbers.nunique() <= MAX_BINS:
        return None
    ranks = numbers.rank(method="average", pct=True)
    bins = np.floor(ranks.to_numpy() * MAX_BINS - 1e-9).clip(0, MAX_BINS - 1)
    return np.where(numbers.notna().to_numpy(), bins, -1).astype(np.int64), MAX_BINS


def _categorical_levels(values: pd.Series) -> np.ndarray:
    """Each item's level (-1: none): values held by at least ``MIN_ITEMS`` items, the
    ``MAX_LEVELS`` most common (ties by value), compared as stripped lower-case text."""
    text = values.astype("string").str.strip().str.lower().where(~_missing(values))
    counts = text.value_counts()
    counts = counts[counts >= MIN_ITEMS]
    kept = sorted(counts.index, key=lambda level: (-counts[level], str(level)))[:MAX_LEVELS]
    position = {level: i for i, level in enumerate(kept)}
    return np.array([position.get(value, -1) if value is not pd.NA else -1
                     for value in text], dtype=np.int64)


def content_columns(attributes: CatalogueAttributes, names: tuple[str, ...]
                    ) -> ContentColumns | None:
    """The level tables for the vocabulary ``names`` (items absent from the catalogue's
    table have no level), from the catalogue alone; None when no column qualifies."""
    table = attributes.table.reindex(list(names))
    used, profiles, matches, owners = [], [], [], []
    for column in table.columns:
        values = table[column]
        binned = _numeric_bins(values)
        if binned is not None:
            level, width = binned
            distance = np.arange(width)[None, :] - level[:, None]
            near = np.exp(-0.5 * distance.astype(float) ** 2)
            near[np.abs(distance) > KERNEL_BINS] = 0.0
        else:
            level = _categorical_levels(values)
            width = int(level.max()) + 1
            near = None
        if width < 2 or (level >= 0).mean() < MIN_COVERAGE:
            continue
        profile = np.zeros((len(names), width))
        has = level >= 0
        profile[np.flatnonzero(has), level[has]] = 1.0
        match = profile.copy() if near is None else np.where(has[:, None], near, 0.0)
        used.append(str(column))
        profiles.append(profile)
        matches.append(match)
        owners.append(np.full(width, len(used) - 1, dtype=np.int64))
    if not used:
        return None

    def with_none_row(blocks: list[np.ndarray]) -> np.ndarray:
        stacked = np.concatenate(blocks, axis=1)
        return np.vstack([np.zeros((1, stacked.shape[1])), stacked]).astype(np.float32)

    return ContentColumns(names=tuple(used), profile=with_none_row(profiles),
                          match=with_none_row(matches), level_column=np.concatenate(owners))
