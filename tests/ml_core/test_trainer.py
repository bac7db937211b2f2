"""The training loop: progress, early stopping with the best weights, seeding, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator

from ml_core.metrics import binary_metrics
from ml_core.models import TabularMLP, build_model
from ml_core.trainer import (
    TrainingCancelled,
    predict_scores,
    resolve_device,
    train_model,
)

CPU = torch.device("cpu")


def test_model_is_opacus_compatible_and_rebuildable():
    model = TabularMLP(7, (16, 8))
    assert ModuleValidator.validate(model, strict=False) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert model(torch.zeros(3, 7)).shape == (3,)
    rebuilt = build_model(model.architecture())
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]


def test_progress_is_reported_every_epoch(spec, split, recorder):
    trained = train_model(split=split, train=spec.train, privacy=None, progress=recorder,
                          stage="training")
    assert [call["epoch"] for call in recorder.calls] == list(range(1, trained.epochs_run + 1))
    assert {call["stage"] for call in recorder.calls} == {"training"}
    assert all(call["total_epochs"] == spec.train.epochs for call in recorder.calls)
    assert all(call["epsilon"] is None and call["loss"] > 0 for call in recorder.calls)
    assert trained.privacy["enabled"] is False


def test_choosing_the_linear_path_reports_one_bar_that_never_runs_back(spec, split, recorder):
    trained = train_model(split=split, train=spec.train, privacy=None, progress=recorder,
                          stage="training_twin", choose_linear_path=True)
    # No decorrelated numeric columns: the two candidates on the split as it is.
    assert [(c["linear_path"], c["whitened"]) for c in trained.candidates] == [
        (True, False), (False, False)]
    assert sum(c["chosen"] for c in trained.candidates) == 1 and trained.split is None
    epochs = [call["epoch"] for call in recorder.calls]
    assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)
    assert {call["total_epochs"] for call in recorder.calls} == {2 * spec.train.epochs}
    assert epochs[-1] > spec.train.epochs  # the second training counted on from the first


def test_best_weights_are_kept(spec, split):
    # Long enough, with a high learning rate, for the validation AUC to move around.
    config = dataclasses.replace(spec.train, epochs=12, learning_rate=0.1, patience=3)
    trained = train_model(split=split, train=config, privacy=None)
    metrics = [entry["val_metric"] for entry in trained.history]
    assert trained.history[trained.best_epoch - 1]["val_metric"] == max(metrics)
    scores = predict_scores(trained.model, split.x_val, device=CPU)
    assert binary_metrics(split.y_val, scores)["roc_auc"] == pytest.approx(max(metrics))
    if trained.stopped_early:
        assert trained.epochs_run - trained.best_epoch == config.patience


def test_training_is_seeded(spec, split):
    first = train_model(split=split, train=spec.train, privacy=None)
    second = train_model(split=split, train=spec.train, privacy=None)
    other = train_model(split=split, train=dataclasses.replace(spec.train, seed=99),
                        privacy=None)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert first.history == second.history
    assert not torch.equal(first.model.layers[0].weight, other.model.layers[0].weight)


def test_checkpoint_is_written_each_epoch(spec, split, tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    trained = train_model(split=split, train=spec.train, privacy=None, checkpoint_path=path)
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["epoch"] == trained.epochs_run
    assert len(checkpoint["history"]) == trained.epochs_run
    assert not any(key.startswith("_module") for key in checkpoint["model"])


def test_cancel_before_training_spends_nothing(spec, split):
    with pytest.raises(TrainingCancelled) as caught:
        train_model(split=split, train=spec.train, privacy=None, should_stop=lambda: True)
    assert caught.value.privacy["steps"] == 0


def test_cancel_is_checked_within_an_epoch(spec, split):
    # Asked before every step: the second call comes after the first batch.
    calls = []

    def stop_inside_first_epoch() -> bool:
        calls.append(1)
        return len(calls) >= 2  # the first check is before epoch 1, the second mid-epoch

    with pytest.raises(TrainingCancelled):
        train_model(split=split, train=spec.train, privacy=None,
                    should_stop=stop_inside_first_epoch)
    assert len(calls) == 2


def test_device_choice():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


def test_scores_are_probabilities(spec, split):
    trained = train_model(split=split, train=spec.train, privacy=None)
    scores = predict_scores(trained.model, split.x_test, device=CPU)
    assert scores.dtype == np.float64 and ((scores > 0) & (scores < 1)).all()
