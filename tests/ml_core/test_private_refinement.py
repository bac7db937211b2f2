"""Numeric columns in a narrow band far from zero (kelvin, rpm) keep their resolution under
the private encoder: a second, fine DP histogram around the coarse median, always released
and counted in the budget (docs/real-data.md: the AI4I machine file)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ml_core.data import fit_private_encoder
from ml_core.person_privacy import PrivatePlan
from ml_core.private_statistics import (
    NUMERIC_VALUES,
    REFINE_MIN_PERSONS,
    PreprocessingNoise,
    private_numeric,
    private_refined,
)
from ml_core.spec import PrivacyConfig

NOISE = PreprocessingNoise.plan(noise_multiplier=2.0, n_categorical=1, n_histograms=4,
                                threshold_delta=1e-6, max_rows=1, refine_numeric=True)


def _kelvin(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(300.0, 2.0, n)


def test_a_narrow_band_far_from_zero_is_resolved_by_the_fine_histogram():
    values, weights = _kelvin(10_000), np.ones(10_000)
    generator = np.random.default_rng(1)
    coarse = private_numeric(np.arcsinh(values), weights, noise=NOISE, generator=generator)
    # 296 K to 304 K share one or two 0.5-wide asinh cells: the coarse scale sees nothing.
    assert coarse.median in set(NUMERIC_VALUES.tolist())
    assert np.std(np.arcsinh(values)) / coarse.scale < 0.05
    fine = private_refined(values, weights, coarse=coarse, noise=NOISE, generator=generator)
    assert fine is not None
    assert abs(fine.median - np.median(values)) < 0.5
    q1, q3 = np.quantile(values, [0.25, 0.75])
    assert abs(fine.scale - (q3 - q1) / 1.349) / ((q3 - q1) / 1.349) < 0.1


def test_too_few_persons_or_a_wide_spread_keep_the_coarse_statistics():
    generator = np.random.default_rng(2)
    few = _kelvin(200)
    coarse = private_numeric(np.arcsinh(few), np.ones(200), noise=NOISE, generator=generator)
    assert private_refined(few, np.ones(200), coarse=coarse, noise=NOISE,
                           generator=generator) is None
    wide = np.random.default_rng(3).lognormal(8.0, 2.0, 10_000)  # incomes: asinh suits them
    coarse = private_numeric(np.arcsinh(wide), np.ones(10_000), noise=NOISE,
                             generator=generator)
    assert private_refined(wide, np.ones(10_000), coarse=coarse, noise=NOISE,
                           generator=generator) is None


def test_the_encoder_reads_such_a_column_linearly_and_standardised():
    frame = pd.DataFrame({"air_k": _kelvin(10_000), "wear": np.random.default_rng(4).lognormal(
        3.0, 1.5, 10_000)})
    encoder = fit_private_encoder(frame, ("air_k", "wear"), persons=np.arange(10_000),
                                  noise=NOISE, seed=0)
    assert encoder.asinh == ("wear",)  # the linear one is out of the asinh list
    column = encoder.transform(frame)[:, encoder.feature_names.index("air_k")]
    assert abs(float(np.std(column)) - 1.0) < 0.1 and abs(float(np.median(column))) < 0.1


def test_a_numeric_column_of_a_large_table_is_charged_two_histograms():
    def plan(n: int) -> PreprocessingNoise:
        frame = pd.DataFrame({"air_k": _kelvin(n), "rpm": _kelvin(n) * 5,
                              "type": np.random.default_rng(5).choice(["L", "M", "H"], n)})
        return PrivatePlan.for_frame(frame=frame, columns=("air_k", "rpm", "type"),
                                     privacy=PrivacyConfig(), unit_column=None).noise

    large, small = plan(REFINE_MIN_PERSONS), plan(REFINE_MIN_PERSONS - 1)
    assert (large.n_histograms, large.refine_numeric) == (3 + 2, True)
    # A small table releases no fine histogram and pays for none.
    assert (small.n_histograms, small.refine_numeric) == (3, False)
    frame = pd.DataFrame({"air_k": _kelvin(10_000)})
    coarse_only = fit_private_encoder(frame, ("air_k",), persons=np.arange(10_000),
                                      noise=dataclasses.replace(NOISE, refine_numeric=False),
                                      seed=0)
    assert coarse_only.asinh == ("air_k",)
