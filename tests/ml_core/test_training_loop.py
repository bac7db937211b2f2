"""The one training loop's own reports: why it stopped and how much budget was left."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from ml_core import training_loop
from ml_core.models import TabularMLP
from ml_core.trainer import tabular_batch_loss, tabular_dataset, train_model, validation_score
from ml_core.training_loop import LoopPlan, run_loop

pytestmark = pytest.mark.filterwarnings("ignore:Secure RNG turned off")
CPU = torch.device("cpu")


def _plan(split, train, privacy) -> LoopPlan:
    def validate(model: nn.Module) -> tuple[float, float]:
        return validation_score(model, split, metric="roc_auc", device=CPU)

    return LoopPlan(
        build=lambda: TabularMLP(split.n_features, train.hidden_sizes),
        dataset=tabular_dataset(split.x_train, split.y_train), batch_size=train.batch_size,
        batch_loss=tabular_batch_loss(nn.BCEWithLogitsLoss(), CPU), validate=validate,
        train=train, privacy=privacy, stage="training", device=CPU)


def test_all_epochs_then_the_reason_is_epochs(spec, split):
    train = dataclasses.replace(spec.train, epochs=2, patience=10)
    result = run_loop(_plan(split, train, None))
    assert (result.stop_reason, result.epochs_run, result.stopped_early) == ("epochs", 2, False)
    assert result.epsilon_remaining is None
    assert result.privacy["enabled"] is False


def test_early_stopping_is_reported(spec, split):
    # A patience of 0 ends the training after the first epoch that does not gain.
    train = dataclasses.replace(spec.train, epochs=6, patience=0)
    result = train_model(split=split, train=train, privacy=None)
    assert result.stop_reason == "early_stop" and result.stopped_early
    assert result.epochs_run < 6


def test_private_runs_report_the_budget_left(spec, split):
    train = dataclasses.replace(spec.train, epochs=2)
    result = run_loop(_plan(split, train, spec.privacy))
    privacy = result.privacy
    assert privacy["steps"] == privacy["planned_steps"]
    assert result.epsilon_remaining == pytest.approx(
        privacy["target_epsilon"] - privacy["epsilon"])
    assert 0 <= result.epsilon_remaining <= 0.02  # the noise is set to spend the budget


def test_an_epoch_beyond_the_planned_steps_is_not_taken(spec, split):
    train = dataclasses.replace(spec.train, epochs=3, patience=10)
    plan = _plan(split, train, spec.privacy)
    started = training_loop.start(plan)
    # As if the schedule had been planned for one epoch: the second would overspend.
    started.wrapped.planned_steps = len(started.loader)
    result = training_loop._epochs(plan, started, progress=None, should_stop=None)
    assert result.stop_reason == "budget" and result.epochs_run == 1
    assert result.privacy["steps"] == len(started.loader)
