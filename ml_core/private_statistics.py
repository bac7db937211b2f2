"""Preprocessing statistics a released model carries, estimated with differential privacy.

A raw median, mean or "levels seen 5 times" is a leak: one person changes it
deterministically. Here every statistic fitted on private rows comes from noisy,
person-weighted histograms:

* each person's weight is 1 in total per column: a person with ``n`` rows gives each of
  up to ``max_rows`` of them (a seeded random subset beyond that) weight ``1 / min(n,
  max_rows)``, so adding or removing a person moves each column's histogram by at most 1 in
  L2 norm and touches at most ``max_rows`` of its cells;
* numeric columns (read as asinh(value)): a histogram over a fixed, public grid (cells 0.5
  wide, up to asinh(+-1e9), and a cell for missing values), with Gaussian noise; the median
  (imputation value and centre), the interquartile scale and whether gaps are common enough
  for an indicator are read from the noisy histogram (post-processing); then, on a large
  table, a fine hierarchical histogram on the column's own scale around that median
  (:func:`private_refined`: a noisy tree of ``TREE_LEVELS`` levels), whose statistics
  replace the coarse ones where they resolve the spread (``1 + TREE_LEVELS`` histograms per
  numeric column, all counted in ``n_histograms``);
* categorical columns: a noisy histogram over the levels present, of which only the levels
  whose noisy weight clears ``threshold`` are released (a level held by one person alone
  enters with probability at most ``threshold_delta`` / (levels it could be));
* the decision threshold: a noisy histogram of the validation persons' scores by label on
  20 public bins, whose best-F1 cut is the threshold.

A training person touches the ``n_histograms`` column histograms, which share the noise
``sigma``: one Gaussian mechanism with L2 sensitivity ``sqrt(n_histograms)``, noise multiplier
``z = sigma / sqrt(n_histograms)``. A validation person touches only the threshold's
histogram, whose noise is ``z`` (sensitivity 1). A person is in one part only, so the
release as a whole is one Gaussian mechanism with multiplier ``z``, which
:mod:`ml_core.privacy_composition` composes with the SGD steps.

Noise is drawn from NumPy's seeded generator, like Opacus' noise with ``secure_mode`` off,
so a run is reproducible from its seed. OpenDP's samplers are cryptographically secure but
cannot be seeded, and its Gaussian measurement over float vectors is the same textbook
mechanism; the accounting is dp-accounting's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

# The public numeric grid, for values on the asinh scale (private encoders read numeric
# columns as asinh(value)): cells 0.5 wide from -21.5 to 21.5 (asinh of +-1e9); values
# beyond fall into the outer cells. Declared, never fitted.
NUMERIC_EDGES = np.arange(-21.5, 21.5 + 1e-9, 0.5)
# Each cell's representative value: its midpoint; the outer cells their edge.
NUMERIC_VALUES = np.concatenate([[NUMERIC_EDGES[0]],
                                 (NUMERIC_EDGES[:-1] + NUMERIC_EDGES[1:]) / 2,
                                 [NUMERIC_EDGES[-1]]])
# 1.349 standard deviations span a normal distribution's interquartile range.
IQR_PER_STD = 1.349
# Coarse score bins: every bin adds noise to the cumulative counts the F1 is read from.
SCORE_BINS = 20
# Noisy cells below this many noise deviations are read as empty when quantiles are taken.
NOISE_FLOOR = 3.0


def person_codes(persons: np.ndarray) -> tuple[np.ndarray, int]:
    """(one integer code per row, number of persons) for any array of person values; a row
    with no person value is a person of its own (the cautious reading)."""
    codes, uniques = pd.factorize(pd.Series(persons), sort=False)
    codes = codes.astype(np.int64)
    gaps = codes < 0
    if gaps.any():
        codes[gaps] = len(uniques) + np.arange(int(gaps.sum()))
    return codes, len(uniques) + int(gaps.sum())


def contribution_weights(person_codes: np.ndarray, *, max_rows: int, seed: int) -> np.ndarray:
    """One weight per row: ``1 / min(n, max_rows)`` on up to ``max_rows`` rows of each person
    (a seeded uniform subset when they have more), 0 on the rest; each person's weights sum
    to 1."""
    codes = np.asarray(person_codes, dtype=np.int64)
    generator = np.random.Generator(np.random.PCG64(seed))
    # A random rank per row within its person: rows ranked below max_rows are kept.
    keys = generator.random(len(codes))
    order = np.lexsort((keys, codes))
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    sizes = np.diff(np.r_[starts, len(codes)])
    rank = np.arange(len(codes)) - np.repeat(starts, sizes)
    kept = np.minimum(np.repeat(sizes, sizes), max_rows)
    weights = np.zeros(len(codes))
    weights[order] = np.where(rank < max_rows, 1.0 / kept, 0.0)
    return weights


@dataclass(frozen=True)
class PreprocessingNoise:
    """The noise of one run's released statistics (see the module docstring)."""

    sigma: float  # standard deviation of the noise on each (person-weighted) count
    n_histograms: int  # histograms one person can touch (sensitivity sqrt of this)
    threshold: float  # a level is released when its noisy weight exceeds this
    threshold_delta: float
    max_rows: int
    # Whether numeric columns release their fine histogram too (private_refined): only on
    # tables with persons enough to fill its cells, so small tables keep their budget.
    refine_numeric: bool = False
    # Whether the numeric columns also release their second-moment matrix, to decorrelate
    # them (private_whitening): only where its noise is small (whitening_noise).
    whiten_numeric: bool = False

    @property
    def noise_multiplier(self) -> float:
        """Noise over L2 sensitivity: the Gaussian event the accountant composes (also the
        noise of the validation histogram, whose sensitivity is 1)."""
        return self.sigma / math.sqrt(self.n_histograms)

    @classmethod
    def plan(cls, *, noise_multiplier: float, n_categorical: int, n_histograms: int,
             threshold_delta: float, max_rows: int,
             refine_numeric: bool = False,
             whiten_numeric: bool = False) -> PreprocessingNoise:
        """Noise for ``n_histograms`` histograms released as one Gaussian mechanism with
        ``noise_multiplier``, and the vocabulary threshold for ``threshold_delta``.

        A person holds at most ``max_rows`` levels per categorical column, with weights
        summing to at most 1; the chance that any of their levels clears the threshold
        without them is at most ``max_rows * P(1 + N(0, sigma^2) > threshold)`` per column
        (the tail is convex in the weight below the threshold), so the threshold puts that
        at ``threshold_delta`` over all ``n_categorical`` columns."""
        n_histograms = max(int(n_histograms), 1)
        sigma = float(noise_multiplier) * math.sqrt(n_histograms)
        per_level = threshold_delta / (max_rows * max(int(n_categorical), 1))
        threshold = 1.0 + sigma * float(norm.isf(per_level))
        return cls(sigma=sigma, n_histograms=n_histograms, threshold=threshold,
                   threshold_delta=float(threshold_delta), max_rows=int(max_rows),
                   refine_numeric=bool(refine_numeric),
                   whiten_numeric=bool(whiten_numeric))

    def level_release_probability(self, weight: float) -> float:
        """Probability that a level of total weight ``weight`` (1 = one whole person) clears
        the threshold: what a rare-level canary should see over repeated runs."""
        return float(norm.sf((self.threshold - weight) / self.sigma))

    def report(self, released: dict) -> dict:
        return {"sigma": self.sigma, "noise_multiplier": self.noise_multiplier,
                "n_histograms": self.n_histograms, "threshold": self.threshold,
                "threshold_delta": self.threshold_delta, "max_rows": self.max_rows,
                "released": released}


def _noisy(counts: np.ndarray, *, sigma: float, generator: np.random.Generator) -> np.ndarray:
    return counts + generator.normal(0.0, sigma, size=counts.shape)


def _quantile(cells: np.ndarray, values: np.ndarray, q: float) -> float:
    """The ``q``-quantile of a (non-negative) histogram with cell values ``values``."""
    total = cells.sum()
    if total <= 0:
        return 0.0
    position = int(np.searchsorted(np.cumsum(cells), q * total, side="left"))
    return float(values[min(position, len(values) - 1)])


@dataclass(frozen=True)
class NumericStatistics:
    """A numeric column's released statistics: imputation value, centre, scale, indicator."""

    median: float
    scale: float
    missing_indicator: bool
    # False: too few persons for the noise; median and scale are placeholders (0, 1).
    resolved: bool = True


def _grid_histogram(values: np.ndarray, weights: np.ndarray, *, noise: PreprocessingNoise,
                    generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(noisy histogram on the public grid, cell 0 the missing values; its non-missing cells
    that clearly hold data, the rest 0)."""
    values = np.asarray(values, dtype=np.float64)
    gaps = np.isnan(values)
    # Cell 0: missing; cells 1..: the grid's len(edges) + 1 intervals.
    cells = np.where(gaps, 0, 1 + np.searchsorted(NUMERIC_EDGES, np.nan_to_num(values),
                                                  side="right"))
    counts = np.bincount(cells, weights=weights, minlength=len(NUMERIC_EDGES) + 2)
    noisy = _noisy(counts, sigma=noise.sigma, generator=generator)
    # Only cells that clearly hold data count towards the quantiles: the many empty cells of
    # the wide grid would otherwise add their positive noise to the tails (post-processing).
    return noisy, np.where(noisy[1:] > NOISE_FLOOR * noise.sigma, noisy[1:], 0.0)


def private_numeric(values: np.ndarray, weights: np.ndarray, *, noise: PreprocessingNoise,
                    generator: np.random.Generator) -> NumericStatistics:
    """Median, robust scale and missing-indicator choice of ``values`` (NaN = missing) from a
    noisy person-weighted histogram on the public grid."""
    noisy, present = _grid_histogram(values, weights, noise=noise, generator=generator)
    if present.sum() <= 0:  # too few persons for this noise: the likeliest cell, scale 1
        return NumericStatistics(median=float(NUMERIC_VALUES[int(np.argmax(noisy[1:]))]),
                                 scale=1.0, missing_indicator=bool(noisy[0] > noise.threshold))
    median = _quantile(present, NUMERIC_VALUES, 0.5)
    spread = (_quantile(present, NUMERIC_VALUES, 0.75)
              - _quantile(present, NUMERIC_VALUES, 0.25)) / IQR_PER_STD
    # A constant-looking column keeps scale 1: dividing by ~0 would blow up new values.
    scale = spread if spread > 1e-12 else 1.0
    return NumericStatistics(median=median, scale=scale,
                             missing_indicator=bool(noisy[0] > noise.threshold))


# The refinement of a numeric column (always released, so the budget does not depend on
# the data): the coarse median's cell and its two neighbours, back on the column's own
# scale, cut into REFINED_CELLS equal cells, released as a noisy hierarchical histogram: the
# leaf cells and their sums in blocks of TREE_BRANCHING, TREE_BRANCHING ** 2, ... (one
# noisy histogram per level; a person adds 1 to one node of each level, so the tree is
# charged TREE_LEVELS histograms). A quantile is found top-down, a few nodes per level, so a
# range count carries the noise of about TREE_LEVELS * (TREE_BRANCHING - 1) nodes instead of
# that of every fine cell it covers: columns whose fine cells each hold a handful of persons
# (speeds in rpm, torques, tool wear on a machine table) are resolved too. A column whose
# interquartile range spans at least REFINED_MIN_CELLS leaves, inside the window, is
# encoded linearly from the fine statistics: temperatures in kelvin, speeds in rpm, lab
# values in a narrow band lose their resolution in the 0.5-wide asinh cells (298 K and
# 302 K share a cell).
TREE_BRANCHING = 8
TREE_LEVELS = 4
REFINED_CELLS = TREE_BRANCHING ** TREE_LEVELS
REFINED_MIN_CELLS = 8
# The fine statistics stand only where a quantile's rank noise is at most this share of the
# persons (noisy total of the tree).
REFINED_MAX_RANK_NOISE = 0.05
# Below this many persons (a count the run already treats as public, like the split sizes)
# the fine cells hold too few persons to clear the noise: no fine histogram is released.
REFINE_MIN_PERSONS = 2000


def tree_levels(counts: np.ndarray) -> list[np.ndarray]:
    """The levels of the hierarchical histogram over ``counts`` (REFINED_CELLS leaves),
    coarsest first: TREE_BRANCHING nodes, then TREE_BRANCHING ** 2, ..., the leaves."""
    levels = [np.asarray(counts, dtype=np.float64)]
    while len(levels[0]) > TREE_BRANCHING:
        levels.insert(0, levels[0].reshape(-1, TREE_BRANCHING).sum(axis=1))
    return levels


def tree_quantile(levels: list[np.ndarray], q: float) -> float:
    """The ``q``-quantile of a noisy hierarchical histogram (:func:`tree_levels`' layout),
    as a position in leaf cells (0 to the number of leaves), found top-down: at each level
    the node holding the quantile among its parent's children (negative noisy counts read
    as 0), the share of the way into it carried down to its children (post-processing)."""
    nodes = np.clip(levels[0], 0.0, None)
    target, start = q * nodes.sum(), 0
    for depth, level in enumerate(levels):
        nodes = np.clip(level[start:start + TREE_BRANCHING], 0.0, None) if depth else nodes
        total = nodes.sum()
        if total <= 0:  # nothing left under this node: its middle
            return (start + len(nodes) / 2) * TREE_BRANCHING ** (len(levels) - 1 - depth)
        target = min(max(target, 0.0), total)
        cumulative = np.cumsum(nodes)
        index = min(int(np.searchsorted(cumulative, target, side="left")), len(nodes) - 1)
        before = cumulative[index] - nodes[index]
        share = (target - before) / nodes[index] if nodes[index] > 0 else 0.5
        if depth == len(levels) - 1:
            return start + index + share
        start = (start + index) * TREE_BRANCHING
        # The share of the way into this node, applied to its children's own total.
        next_nodes = np.clip(levels[depth + 1][start:start + TREE_BRANCHING], 0.0, None)
        target = share * next_nodes.sum()
    raise AssertionError("unreachable")


def private_refined(values: np.ndarray, weights: np.ndarray, *, coarse: NumericStatistics,
                    noise: PreprocessingNoise, generator: np.random.Generator
                    ) -> NumericStatistics | None:
    """Median and scale of ``values`` (the column's own scale, NaN = missing) from a noisy
    hierarchical histogram over the window around ``coarse.median`` (asinh scale,
    released), or None when it does not resolve the column's spread (a spread wider than
    the window or too narrow for its leaves, or too few persons for the noise: the coarse
    statistics then stand). The histogram is always drawn and noised, so what is spent
    never depends on the data."""
    values = np.asarray(values, dtype=np.float64)
    low, high = np.sinh(coarse.median - 0.75), np.sinh(coarse.median + 0.75)
    edges = np.linspace(low, high, REFINED_CELLS + 1)
    present_rows = ~np.isnan(values)
    # Values beyond the window count in its outer leaves: a quantile there is unresolved.
    cells = np.clip(np.searchsorted(edges, values[present_rows], side="right") - 1, 0,
                    REFINED_CELLS - 1)
    counts = np.bincount(cells, weights=weights[present_rows], minlength=REFINED_CELLS)
    levels = [_noisy(level, sigma=noise.sigma, generator=generator)
              for level in tree_levels(counts)]
    # A quantile's rank carries the noise of up to TREE_LEVELS * (TREE_BRANCHING - 1) nodes.
    rank_noise = noise.sigma * math.sqrt(TREE_LEVELS * (TREE_BRANCHING - 1))
    if rank_noise > REFINED_MAX_RANK_NOISE * max(float(levels[0].sum()), 0.0):
        return None
    width = (high - low) / REFINED_CELLS
    q1, median, q3 = (low + tree_quantile(levels, q) * width for q in (0.25, 0.5, 0.75))
    if not (low + width < q1 and q3 < high - width) or q3 - q1 < REFINED_MIN_CELLS * width:
        return None
    return NumericStatistics(median=float(median), scale=float((q3 - q1) / IQR_PER_STD),
                             missing_indicator=coarse.missing_indicator)


# The decorrelation of a large table's numeric columns: columns that move together (a process
# temperature and the air temperature it follows, a torque and the speed it trades against)
# leave the directions that decide rare events (their difference, their product) with a
# small share of the variance, which DP-SGD's noise then swamps. The standardised numeric
# columns are whitened (ZCA: W = V diag(1 / sqrt(lambda)) V^T, eigenvalues lambda floored at
# WHITENING_MIN_EIGENVALUE) with a DP second-moment matrix: each row's standardised vector
# clipped to a squared norm of WHITENING_ROW_NORM per column, the upper triangle of its outer
# product scaled to L2 norm sqrt(WHITENING_HISTOGRAMS) and summed with the rows' person
# weights, so one person moves the sum by at most sqrt(WHITENING_HISTOGRAMS): charged as that
# many histograms of the one Gaussian mechanism. Released only where an entry's noise,
# computed from public counts, is at most WHITENING_MAX_NOISE (AI4I: 5 columns, 10,000
# machines, about 0.009); elsewhere it is neither released nor charged.
WHITENING_HISTOGRAMS = 16
WHITENING_ROW_NORM = 2.0
WHITENING_MIN_EIGENVALUE = 0.1
WHITENING_MAX_NOISE = 0.01


def whitening_noise(*, noise_multiplier: float, n_histograms: int, n_numeric: int,
                    n_units: int) -> float:
    """The noise (standard deviation) of one second-moment entry of ``n_numeric``
    standardised columns over ``n_units`` persons, when the release of ``n_histograms``
    histograms at ``noise_multiplier`` also holds the matrix (WHITENING_HISTOGRAMS more)."""
    sigma = noise_multiplier * math.sqrt(n_histograms + WHITENING_HISTOGRAMS)
    return (sigma / math.sqrt(WHITENING_HISTOGRAMS) * WHITENING_ROW_NORM * n_numeric
            / max(n_units, 1))


def private_whitening(standardised: np.ndarray, weights: np.ndarray, *,
                      noise: PreprocessingNoise, generator: np.random.Generator) -> np.ndarray:
    """The ZCA whitening matrix (columns x columns) of ``standardised`` (rows x numeric
    columns, centred and scaled by their DP statistics, gaps imputed) from a noisy,
    person-weighted second-moment matrix (see above)."""
    z = np.asarray(standardised, dtype=np.float64)
    d = z.shape[1]
    bound = WHITENING_ROW_NORM * d
    norms = np.maximum((z ** 2).sum(axis=1), 1e-12)
    z = z * np.minimum(1.0, np.sqrt(bound / norms))[:, None]
    upper = np.triu_indices(d)
    # Each row's products, scaled so that a row (and so a person, weights summing to 1)
    # moves the sums by at most sqrt(WHITENING_HISTOGRAMS) in L2 norm.
    scale = math.sqrt(WHITENING_HISTOGRAMS) / bound
    sums = ((z * np.asarray(weights, dtype=np.float64)[:, None]).T @ z)[upper] * scale
    noisy = _noisy(sums, sigma=noise.sigma, generator=generator)
    moments = np.zeros((d, d))
    moments[upper] = noisy / scale / max(float(np.sum(weights)), 1.0)
    moments = moments + np.triu(moments, 1).T
    values, vectors = np.linalg.eigh(moments)
    values = np.maximum(values, WHITENING_MIN_EIGENVALUE)
    return (vectors / np.sqrt(values)) @ vectors.T


def private_vocabulary(levels: list[str], weights: np.ndarray, *, noise: PreprocessingNoise,
                       generator: np.random.Generator) -> tuple[str, ...]:
    """The levels of ``levels`` (one per row) whose noisy person weight clears the
    threshold, sorted; levels with no weight (rows beyond a person's bound) are not
    counted."""
    return tuple(sorted(private_level_counts(levels, weights, noise=noise,
                                             generator=generator)))


def private_level_counts(levels: list[str], weights: np.ndarray, *,
                         noise: PreprocessingNoise, generator: np.random.Generator
                         ) -> dict[str, float]:
    """:func:`private_vocabulary`'s released levels with their noisy weights (the same
    draws: releasing the counts beside the levels is post-processing, at no extra cost)."""
    names, codes = np.unique(np.asarray(levels, dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(codes, weights=weights, minlength=len(names))
    held = counts > 0
    noisy = _noisy(counts[held], sigma=noise.sigma, generator=generator)
    cleared = noisy > noise.threshold
    return {str(name): float(count)
            for name, count in zip(names[held][cleared], noisy[cleared], strict=True)}


def private_threshold(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, *,
                      noise: PreprocessingNoise, generator: np.random.Generator) -> float:
    """The best-F1 decision threshold read from a noisy person-weighted histogram of
    ``scores`` (in [0, 1]) by label, on ``SCORE_BINS`` public bins."""
    bins = np.minimum((np.asarray(scores) * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
    positive = np.asarray(labels).astype(bool)
    counts = np.bincount(bins + SCORE_BINS * positive, weights=weights,
                         minlength=2 * SCORE_BINS)
    noisy = np.clip(_noisy(counts, sigma=noise.noise_multiplier, generator=generator), 0.0,
                    None)
    negatives, positives = noisy[:SCORE_BINS], noisy[SCORE_BINS:]
    # Predicting positive from bin b upwards: true positives and predicted positives.
    tp = np.cumsum(positives[::-1])[::-1]
    predicted = tp + np.cumsum(negatives[::-1])[::-1]
    f1 = 2 * tp / np.maximum(predicted + positives.sum(), 1e-12)
    # Cut 0 (everything positive) is no decision at all: the cut is chosen from bin 1 up.
    return float((1 + np.argmax(f1[1:])) / SCORE_BINS)
