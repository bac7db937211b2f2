"""Numeric columns in a narrow band far from zero (kelvin, rpm) keep their resolution under
the private encoder: a second, fine DP histogram around the coarse median, hierarchical (a
noisy tree of TREE_LEVELS levels), always released and counted in the budget
(docs/real-data.md: the AI4I machine file)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from ml_core.artifacts import ENCODER_FILE
from ml_core.data import encode_and_split, fit_private_encoder, without_whitening
from ml_core.person_privacy import PrivatePlan
from ml_core.private_statistics import (
    NUMERIC_VALUES,
    REFINE_MIN_PERSONS,
    REFINED_CELLS,
    TREE_BRANCHING,
    TREE_LEVELS,
    WHITENING_HISTOGRAMS,
    WHITENING_MAX_NOISE,
    WHITENING_ROW_NORM,
    PreprocessingNoise,
    contribution_weights,
    private_numeric,
    private_refined,
    private_whitening,
    tree_levels,
    tree_quantile,
    whitening_noise,
)
from ml_core.spec import ColumnMapping, PrivacyConfig, TrainConfig
from tests.support.person_accounting import assert_composed_epsilon

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


def test_the_tree_finds_a_quantile_to_within_a_leaf_without_noise():
    counts = np.random.default_rng(6).poisson(3.0, REFINED_CELLS).astype(float)
    levels = tree_levels(counts)
    assert [len(level) for level in levels] == [TREE_BRANCHING ** (k + 1)
                                                for k in range(TREE_LEVELS)]
    assert all(level.sum() == pytest.approx(counts.sum()) for level in levels)
    cumulative = np.cumsum(counts)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        position = tree_quantile(levels, q)
        exact = int(np.searchsorted(cumulative, q * counts.sum(), side="left"))
        assert exact <= position <= exact + 1


def test_a_column_with_a_handful_of_persons_per_fine_cell_is_resolved_by_the_tree():
    """A speed in rpm on 6,500 machines at the noise of a 5-column machine table (epsilon
    0.75 for the statistics): its 4,096 fine cells hold a handful of machines each, yet the
    tree's quantiles give its median and scale."""
    noise = PreprocessingNoise.plan(noise_multiplier=5.46, n_categorical=1,
                                    n_histograms=5 * (1 + TREE_LEVELS), threshold_delta=1e-6,
                                    max_rows=1, refine_numeric=True)
    values = np.random.default_rng(7).normal(1540.0, 180.0, 6500)
    weights = np.ones(len(values))
    generator = np.random.default_rng(8)
    coarse = private_numeric(np.arcsinh(values), weights, noise=noise, generator=generator)
    fine = private_refined(values, weights, coarse=coarse, noise=noise, generator=generator)
    assert fine is not None
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    assert abs(fine.median - median) < 0.1 * (q3 - q1)
    assert abs(fine.scale - (q3 - q1) / 1.349) / ((q3 - q1) / 1.349) < 0.15


def test_one_person_moves_the_tree_by_one_per_level():
    """The privacy cross-check of the tree: adding a person (weight 1) changes one node per
    level by 1, so the tree's L2 sensitivity is sqrt(TREE_LEVELS): TREE_LEVELS histograms
    of the one Gaussian mechanism, as the plan charges them."""
    rng = np.random.default_rng(9)
    counts = rng.poisson(2.0, REFINED_CELLS).astype(float)
    for cell in rng.integers(0, REFINED_CELLS, 20):
        with_person = counts.copy()
        with_person[cell] += 1.0
        change = np.concatenate([a - b for a, b in zip(tree_levels(with_person),
                                                       tree_levels(counts), strict=True)])
        assert np.count_nonzero(change) == TREE_LEVELS
        assert np.linalg.norm(change) == pytest.approx(np.sqrt(TREE_LEVELS))
    # A person's rows weigh 1 in total, up to max_rows of them (several leaves, same bound).
    weights = contribution_weights(np.zeros(5, dtype=np.int64), max_rows=8, seed=0)
    assert weights.sum() == pytest.approx(1.0)


def test_a_private_run_on_a_large_table_spends_what_the_accountant_says(tmp_path):
    """A run on 5,000 persons (numeric columns refined and decorrelated) reports the noise
    of its 3 + 2 * TREE_LEVELS + WHITENING_HISTOGRAMS histograms at its preprocessing share,
    and an epsilon that an independent dp-accounting composition confirms."""
    from ml_core.pipeline import run_training
    from ml_core.spec import (
        ColumnMapping,
        ColumnRole,
        ProblemSpec,
        RoleHint,
        TaskType,
        TrainConfig,
    )

    n = 5000
    rng = np.random.default_rng(10)
    frame = pd.DataFrame({"air_k": _kelvin(n, 11), "rpm": rng.normal(1500, 180, n),
                          "type": rng.choice(["L", "M", "H"], n)})
    frame["failed"] = np.where((frame["rpm"] > 1700) & (frame["air_k"] > 301), "yes", "no")
    spec = ProblemSpec(key="machines", name="Machines", description="",
                       task_type=TaskType.BINARY_CLASSIFICATION,
                       hints=(RoleHint(role=ColumnRole.TARGET, names=("failed",),
                                       required=True),),
                       privacy=PrivacyConfig(target_epsilon=3.0))
    train = TrainConfig(epochs=2, batch_size=64, learning_rate=1e-2, hidden_sizes=(8,),
                        patience=2)
    result = run_training(frame=frame, mapping=ColumnMapping(target="failed"), spec=spec,
                          train=train, artifact_dir=tmp_path)
    privacy = result.privacy
    pre = {stage["stage"]: stage for stage in privacy["stages"]}["preprocessing"]
    # 5,000 persons, 2 numeric columns: the second-moment matrix is released too.
    charged = 3 + 2 * TREE_LEVELS + WHITENING_HISTOGRAMS
    assert pre["n_histograms"] == charged
    assert pre["sigma"] == pytest.approx(pre["noise_multiplier"] * np.sqrt(charged))
    assert "numeric decorrelation" in pre["released"]["estimated_privately"]
    encoder = json.loads((Path(result.artifact_path) / ENCODER_FILE).read_text())
    assert encoder["numeric"] == ["air_k", "rpm"] and not encoder.get("asinh")  # refined
    batches = int(round(1 / privacy["sample_rate"]))
    assert_composed_epsilon(privacy, batches=batches, epochs=privacy["steps"] // batches)


def test_a_numeric_column_of_a_large_table_is_charged_its_tree():
    def plan(n: int) -> PreprocessingNoise:
        frame = pd.DataFrame({"air_k": _kelvin(n), "rpm": _kelvin(n) * 5,
                              "type": np.random.default_rng(5).choice(["L", "M", "H"], n)})
        return PrivatePlan.for_frame(frame=frame, columns=("air_k", "rpm", "type"),
                                     privacy=PrivacyConfig(), unit_column=None).noise

    large, small = plan(REFINE_MIN_PERSONS), plan(REFINE_MIN_PERSONS - 1)
    # The coarse histogram of each column, and the TREE_LEVELS levels of each numeric one.
    assert (large.n_histograms, large.refine_numeric) == (3 + 2 * TREE_LEVELS, True)
    # A small table releases no fine histogram and pays for none.
    assert (small.n_histograms, small.refine_numeric) == (3, False)
    frame = pd.DataFrame({"air_k": _kelvin(10_000)})
    coarse_only = fit_private_encoder(frame, ("air_k",), persons=np.arange(10_000),
                                      noise=dataclasses.replace(NOISE, refine_numeric=False),
                                      seed=0)
    assert coarse_only.asinh == ("air_k",)


# --- decorrelation of the numeric columns -----------------------------------------------------

def _whitening_noise() -> PreprocessingNoise:
    """The preprocessing noise of a 10,000-machine table with three numeric columns, each
    refined by its tree, and their decorrelation."""
    return PreprocessingNoise.plan(noise_multiplier=5.46, n_categorical=1,
                                   n_histograms=3 * (1 + TREE_LEVELS) + WHITENING_HISTOGRAMS,
                                   threshold_delta=1e-6, max_rows=1, refine_numeric=True,
                                   whiten_numeric=True)


def _failing_machines(seed: int) -> pd.DataFrame:
    """The temperatures' difference decides: correlated inputs, a direction of small
    variance."""
    frame = _machines(10_000, seed=seed)
    frame["failed"] = np.where(frame["process_k"] - frame["air_k"] > 10.4, "yes", "no")
    return frame


def _machines(n: int, seed: int = 12) -> pd.DataFrame:
    """Air and process temperatures that move together, and a speed."""
    rng = np.random.default_rng(seed)
    air = rng.normal(300.0, 2.0, n)
    return pd.DataFrame({"air_k": air, "process_k": air + 10.0 + rng.normal(0.0, 1.2, n),
                         "rpm": rng.normal(1540.0, 180.0, n)})


def test_correlated_columns_are_whitened_by_the_dp_second_moments():
    """At the noise of a 10,000-machine table the private encoder's numeric features come
    out nearly uncorrelated with unit variance (the temperatures' correlation is 0.86:
    their difference, 0.6 of a standard deviation of either, becomes a whole one)."""
    frame = _machines(10_000)
    noise = _whitening_noise()
    encoder = fit_private_encoder(frame, tuple(frame.columns), persons=np.arange(len(frame)),
                                  noise=noise, seed=0)
    assert len(encoder.whitening) == 3
    x = encoder.transform(frame)
    covariance = np.cov(x.T)
    assert np.abs(covariance - np.eye(3)).max() < 0.15
    # The encoder travels with the artifact as JSON, whitening included.
    again = type(encoder).from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert np.array_equal(again.transform(frame), x)


def test_one_person_moves_the_second_moments_by_at_most_the_charged_bound():
    """The privacy cross-check of the decorrelation: with the noise off, the released sums
    (scaled as private_whitening scales them) move by at most sqrt(WHITENING_HISTOGRAMS) in
    L2 norm when one person, however extreme their rows, is added."""
    rng = np.random.default_rng(13)
    crowd = rng.normal(0.0, 1.0, (500, 4))
    silent = PreprocessingNoise(sigma=0.0, n_histograms=1, threshold=1.0, threshold_delta=0.0,
                                max_rows=8)

    def sums(z: np.ndarray, weights: np.ndarray) -> np.ndarray:
        # The released vector is (moments * scale * total weight) on the upper triangle.
        whitened = private_whitening(z, weights, noise=silent, generator=rng)
        moments = np.linalg.inv(whitened @ whitened)  # the floored moments, recovered
        bound = WHITENING_ROW_NORM * z.shape[1]
        return (moments[np.triu_indices(z.shape[1])] * np.sqrt(WHITENING_HISTOGRAMS) / bound
                * weights.sum())

    base = sums(crowd, np.ones(500))
    for scale in (1.0, 10.0, 1e4):
        person = rng.normal(0.0, scale, (3, 4))  # three rows of one person
        z = np.vstack([crowd, person])
        weights = np.r_[np.ones(500), np.full(3, 1 / 3)]
        change = np.linalg.norm(sums(z, weights) - base)
        assert change <= np.sqrt(WHITENING_HISTOGRAMS) * (1 + 1e-6)


def test_the_decorrelation_is_charged_only_where_its_noise_is_small():
    def plan(frame: pd.DataFrame) -> PreprocessingNoise:
        return PrivatePlan.for_frame(frame=frame, columns=tuple(frame.columns),
                                     privacy=PrivacyConfig(), unit_column=None).noise

    large, small = plan(_machines(10_000)), plan(_machines(2_500))
    assert large.whiten_numeric and large.n_histograms == 3 * (1 + TREE_LEVELS) + 16
    # 2,500 persons: refined, but an entry's noise would be above the bound.
    assert small.refine_numeric and not small.whiten_numeric
    assert small.n_histograms == 3 * (1 + TREE_LEVELS)
    assert whitening_noise(noise_multiplier=large.noise_multiplier,
                           n_histograms=3 * (1 + TREE_LEVELS), n_numeric=3,
                           n_units=10_000) <= WHITENING_MAX_NOISE


def test_the_twin_also_tries_the_inputs_without_the_decorrelation_chosen_on_validation(
        recorder):
    """Where the private encoder whitens the numeric columns, a training chosen on
    validation (the twin) also trains on them without it: four candidates (linear path on
    and off, whitened or not), the better on the validation rows kept and recorded, the
    test rows never read, one progress bar over all four, and the kept model's inputs the
    encoder's own reading of the rows (without the whitening where it chose so)."""
    from ml_core.trainer import train_model, validation_score

    frame = _failing_machines(seed=21)
    noise = _whitening_noise()
    train = TrainConfig(epochs=2, batch_size=256, learning_rate=1e-2, hidden_sizes=(8,),
                        patience=2, seed=3)
    split = encode_and_split(frame, ColumnMapping(target="failed"), train, private_noise=noise)
    assert split.encoder.whitening
    plain = without_whitening(split)
    # The same rows through the encoder without the whitening, to float32 rounding.
    unwhitened = dataclasses.replace(split.encoder, whitening=())
    assert plain.encoder == unwhitened
    for x, ids in ((plain.x_val, split.ids_val), (plain.x_test, split.ids_test)):
        np.testing.assert_allclose(x, unwhitened.transform(frame.loc[ids]), atol=1e-4)

    trained = train_model(split=split, train=train, privacy=None, progress=recorder,
                          stage="training_twin", choose_linear_path=True)
    candidates = trained.candidates
    assert [(c["whitened"], c["linear_path"]) for c in candidates] == [
        (True, True), (True, False), (False, True), (False, False)]
    (kept,) = [c for c in candidates if c["chosen"]]
    assert kept["val_metric"] == max(c["val_metric"] for c in candidates)
    # Chosen on the validation rows of the inputs it reads.
    inputs = trained.inputs(split)
    assert inputs is (split if kept["whitened"] else trained.split)
    assert validation_score(trained.model, inputs, metric="roc_auc",
                            device=torch.device("cpu"))[1] == pytest.approx(kept["val_metric"])
    # One bar over the four trainings, never running back.
    epochs = [call["epoch"] for call in recorder.calls]
    assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)
    assert {call["total_epochs"] for call in recorder.calls} == {4 * train.epochs}
    # The test rows are never read: scrambled, the same choice on the same numbers.
    rng = np.random.default_rng(0)
    scrambled = dataclasses.replace(split, y_test=1 - split.y_test,
                                    x_test=rng.normal(size=split.x_test.shape).astype(np.float32))
    again = train_model(split=scrambled, train=train, privacy=None, choose_linear_path=True)
    assert again.candidates == candidates


def test_the_references_read_the_columns_without_the_decorrelation():
    """Logistic regression and the trees are non-private references: they read the numeric
    columns as the data has them (the decorrelation is a device for DP-SGD's noise, and
    rotated columns would hide thresholds from the trees, lowering the private model's
    bar); a table without it is read as it is."""
    from ml_core.metrics import reference_models
    from ml_core.pipeline import _reference_inputs, _references

    frame = _failing_machines(seed=21)
    noise = _whitening_noise()
    train = TrainConfig(epochs=1, seed=3)
    split = encode_and_split(frame, ColumnMapping(target="failed"), train, private_noise=noise)
    assert split.encoder.whitening
    read = _reference_inputs(split)
    assert not read.encoder.whitening
    np.testing.assert_array_equal(read.x_test, without_whitening(split).x_test)
    spec = SimpleNamespace(metrics=("roc_auc", "pr_auc"))  # all _references reads of it
    got = _references(split=split, spec=spec, seed=0)
    expected = reference_models(x_train=read.x_train, y_train=read.y_train, x_val=read.x_val,
                                y_val=read.y_val, x_test=read.x_test, y_test=read.y_test,
                                metrics=spec.metrics, seed=0)
    assert got == expected
    plain = encode_and_split(frame, ColumnMapping(target="failed"), train)
    assert _reference_inputs(plain) is plain
