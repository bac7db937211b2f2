"""The tabular MLP's linear path (a wide-and-deep logit) and the private schedule of large
tables: larger Poisson batches, the noise searched for the steps they take."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ml_core.models import TabularMLP, build_model
from ml_core.privacy import noise_multiplier_for
from ml_core.spec import TrainConfig
from ml_core.trainer import (
    NONPRIVATE_EPOCH_FACTOR,
    PRIVATE_LARGE_BATCH_LEARNING_RATE,
    nonprivate_schedule,
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
