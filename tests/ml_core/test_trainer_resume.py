"""Resuming from a checkpoint: an interrupted training, continued from its last epoch's
checkpoint, ends exactly where an uninterrupted one does (weights, history, privacy)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ml_core.checkpoints import checkpoint_epochs, load_checkpoint
from ml_core.privacy import epsilon_for
from ml_core.trainer import TrainingCancelled, train_model

CONFIG_CHANGES = {"epochs": 6, "patience": 6}


class StopAfterBatches:
    """A StopCheck answering True after ``n`` calls: an interruption in mid-epoch, like a
    worker killed between two checkpoints."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.n


def assert_same_model(a, b) -> None:
    for (name, left), right in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                                   strict=True):
        assert torch.equal(left, right), name
    assert a.history == b.history
    assert (a.best_epoch, a.epochs_run, a.stopped_early) == (b.best_epoch, b.epochs_run,
                                                             b.stopped_early)


@pytest.mark.parametrize("private", [False, True], ids=["plain", "private"])
def test_resumed_training_equals_an_uninterrupted_one(spec, split, tmp_path, private):
    train = dataclasses.replace(spec.train, **CONFIG_CHANGES, batch_size=16)
    privacy = spec.privacy if private else None
    reference = train_model(split=split, train=train, privacy=privacy)

    path = tmp_path / "training.pt"
    # Stop checks come before every step (one per batch; a Poisson epoch has as many steps
    # as the shuffled one has batches): the (3 n + 2)th check falls inside epoch 4, after
    # the checkpoint of epoch 3.
    batches = math.ceil(len(split.y_train) / train.batch_size)
    with pytest.raises(TrainingCancelled):
        train_model(split=split, train=train, privacy=privacy, checkpoint_path=path,
                    should_stop=StopAfterBatches(3 * batches + 1))
    assert checkpoint_epochs(tmp_path) == {"training": 3}

    resumed = train_model(split=split, train=train, privacy=privacy, checkpoint_path=path)
    assert_same_model(resumed, reference)
    assert resumed.privacy == reference.privacy
    if private:
        steps = resumed.privacy["steps"]
        assert steps == resumed.privacy["planned_steps"]  # no step counted twice or lost
        assert resumed.privacy["epsilon"] == epsilon_for(
            noise_multiplier=resumed.privacy["noise_multiplier"],
            sample_rate=resumed.privacy["sample_rate"], steps=steps,
            delta=resumed.privacy["delta"])


def test_a_finished_checkpoint_is_not_trained_again(spec, split, tmp_path):
    train = dataclasses.replace(spec.train, **CONFIG_CHANGES)
    path = tmp_path / "training.pt"
    first = train_model(split=split, train=train, privacy=spec.privacy, checkpoint_path=path)
    calls = []
    again = train_model(split=split, train=train, privacy=spec.privacy, checkpoint_path=path,
                        progress=lambda **update: calls.append(update))
    assert calls == []  # no epoch ran
    assert_same_model(again, first)
    assert again.privacy == first.privacy


def test_a_checkpoint_of_other_inputs_is_ignored(spec, split, tmp_path):
    train = dataclasses.replace(spec.train, **CONFIG_CHANGES)
    path = tmp_path / "training.pt"
    train_model(split=split, train=train, privacy=None, checkpoint_path=path)
    other = dataclasses.replace(train, seed=train.seed + 1)
    assert load_checkpoint(path) is not None
    fresh = train_model(split=split, train=other, privacy=None)
    from_checkpoint = train_model(split=split, train=other, privacy=None, checkpoint_path=path)
    assert_same_model(from_checkpoint, fresh)
