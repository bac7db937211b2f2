"""The tabular MLP's linear path (a wide-and-deep logit) and the private schedule of large
tables: larger Poisson batches, the noise searched for the steps they take."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ml_core.models import TabularMLP, build_model
from ml_core.privacy import noise_multiplier_for
from ml_core.spec import PrivacyConfig, TrainConfig
from ml_core.trainer import (
    NONPRIVATE_EPOCH_FACTOR,
    PRIVATE_LARGE_BATCH_LEARNING_RATE,
    WEIGHTED_CLIPPING_FACTOR,
    nonprivate_schedule,
    private_clipping,
    private_schedule,
)


def test_the_linear_path_adds_a_logistic_term_and_scores_alike():
    torch.manual_seed(0)
    model = TabularMLP(12, (8, 4), linear_skip=True).eval()
    x = torch.randn(103, 12)
    with torch.no_grad():
        expected = torch.sigmoid(model(x))
        assert torch.equal(model.probabilities(x, block_rows=1024), expected)
        torch.testing.assert_close(model.probabilities(x, block_rows=10), expected)
        # With the MLP's output weights at zero the model is a logistic regression.
        model.layers[-1].weight.zero_()
        model.layers[-1].bias.fill_(0.25)
        logistic = torch.sigmoid(x @ model.skip.weight.t() + 0.25).squeeze(-1)
        torch.testing.assert_close(model(x).sigmoid(), logistic)


def test_an_artifact_saved_before_the_linear_path_loads_without_one():
    old = TabularMLP(5, (3,))
    architecture = old.architecture()
    architecture.pop("linear_skip")  # what older artifacts hold
    rebuilt = build_model(architecture)
    assert rebuilt.skip is None
    rebuilt.load_state_dict(old.state_dict())  # strict: the same parameters
    assert build_model(TabularMLP(5, (3,), linear_skip=True).architecture()).skip is not None


def test_small_tables_keep_their_schedule_large_ones_take_larger_private_batches():
    train = TrainConfig(batch_size=64, learning_rate=1e-2, epochs=30)
    assert private_schedule(train, n_units=650) is train  # 4 % of 650 is below 64
    large = private_schedule(train, n_units=13_000)
    assert (large.batch_size, large.learning_rate) == (520, PRIVATE_LARGE_BATCH_LEARNING_RATE)
    assert dataclasses.replace(large, batch_size=64, learning_rate=1e-2) == train
    # A narrow table keeps its learning rate; a wide one is capped.
    assert private_schedule(train, n_units=13_000, n_features=5).learning_rate == 1e-2
    assert private_schedule(train, n_units=13_000, n_features=252).learning_rate == (
        PRIVATE_LARGE_BATCH_LEARNING_RATE)
    # Fewer, larger batches: more noise per step, less per example of the batch's mean.
    sigma = {batch: noise_multiplier_for(target_epsilon=3.0, delta=1e-5,
                                         sample_rate=batch / 13_000,
                                         steps=30 * int(13_000 / batch)) for batch in (64, 520)}
    assert sigma[520] > sigma[64] and sigma[520] / 520 < sigma[64] / 64


@pytest.mark.parametrize("n_units", [100, 2_000, 50_000])
def test_the_private_batch_is_never_below_the_configured_one(n_units):
    train = TrainConfig(batch_size=128)
    assert private_schedule(train, n_units=n_units).batch_size >= 128
    assert np.isclose(private_schedule(train, n_units=n_units).batch_size,
                      max(128, int(0.04 * n_units)))


def test_only_rare_event_nonprivate_trainings_run_longer():
    balanced = TrainConfig(epochs=30, patience=5)
    assert nonprivate_schedule(balanced) is balanced
    rare = nonprivate_schedule(dataclasses.replace(balanced, class_weighting=True))
    assert (rare.epochs, rare.patience) == (30 * NONPRIVATE_EPOCH_FACTOR, 10)
    # Without privacy the threshold (chosen on validation) sets the alarm rate: no weight.
    assert not rare.class_weighting


def test_a_private_training_that_weights_its_positives_clips_at_a_larger_bound(tmp_path):
    """At the configured bound every row's gradient was clipped, so the positives' weight
    did nothing; a class-weighted private training clips at WEIGHTED_CLIPPING_FACTOR times
    it, and the run's report states that bound. Only the bound (and with it the noise's
    scale) moves: the noise multiplier, the sampling and the steps, hence epsilon, are those
    of the unweighted training."""
    from ml_core.pipeline import run_training
    from verticals.manufacturing.demo_data import machine_readings
    from verticals.registry import get_problem

    privacy = PrivacyConfig(enabled=True, target_epsilon=3.0, max_grad_norm=0.5)
    problem = get_problem("manufacturing", "failure_prediction")
    weighted_train = dataclasses.replace(problem.spec.train, epochs=2, seed=0, device="cpu")
    plain_train = dataclasses.replace(weighted_train, class_weighting=False)
    assert weighted_train.class_weighting
    assert private_clipping(privacy, plain_train) is privacy
    assert private_clipping(privacy, weighted_train).max_grad_norm == (
        0.5 * WEIGHTED_CLIPPING_FACTOR)

    frame = machine_readings(1500, 0)
    reports = {}
    for name, train in (("plain", plain_train), ("weighted", weighted_train)):
        reports[name] = run_training(frame=frame, mapping=problem.sample_mapping,
                                     spec=problem.spec, privacy=privacy, train=train,
                                     artifact_dir=tmp_path / name).privacy
    plain, weighted = reports["plain"], reports["weighted"]
    assert plain["max_grad_norm"] == plain["contribution_bound"]["max_grad_norm"] == 0.5
    assert weighted["max_grad_norm"] == 0.5 * WEIGHTED_CLIPPING_FACTOR
    assert weighted["contribution_bound"]["max_grad_norm"] == weighted["max_grad_norm"]
    for key in ("epsilon", "noise_multiplier", "sample_rate", "steps"):
        assert weighted[key] == pytest.approx(plain[key]), key
