"""Person-level DP-SGD: Poisson sampling over persons, at most k rows each, one clip per person."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ml_core.data import split_by_person
from ml_core.fast_clipping import fast_clipped_sum
from ml_core.models import TabularMLP
from ml_core.sampling import PersonBatchSampler, PersonRows
from ml_core.trainer import make_person_loader


def persons_table(n_persons: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and person ids; person p has 1 + p % 12 rows (up to 12)."""
    rng = np.random.default_rng(seed)
    persons = np.repeat(np.arange(n_persons), 1 + np.arange(n_persons) % 12)
    rng.shuffle(persons)
    x = rng.normal(size=(len(persons), 5)).astype(np.float32)
    y = (rng.random(len(persons)) < 0.4).astype(np.float32)
    return x, y, persons


def test_a_person_brings_at_most_k_rows_weighted_to_one():
    x, y, persons = persons_table()
    data = PersonRows(features=x, labels=y, persons=persons, max_rows=4, seed=0)
    assert len(data) == 40
    for key in range(len(data)):
        features, labels, weights = data[key]
        rows = data.rows_drawn(key)
        assert features.shape == (4, 5) and len(rows) <= 4
        assert len(set(persons[rows])) == 1  # one person's rows only
        assert float(weights.sum()) == pytest.approx(1.0)
        assert torch.count_nonzero(weights) == len(rows)
        np.testing.assert_array_equal(features[:len(rows)].numpy(), x[rows])


def test_every_row_of_a_large_person_is_used_over_steps():
    x, y, persons = persons_table()
    data = PersonRows(features=x, labels=y, persons=persons, max_rows=3, seed=1)
    largest = int(np.argmax(data.rows_per_person))
    seen = set()
    for salt in range(200):
        seen |= set(data.rows_drawn(salt * len(data) + largest).tolist())
    assert seen == set(data.rows[largest].tolist())


def test_persons_are_poisson_sampled_at_the_rate():
    sampler = PersonBatchSampler(num_samples=50, sample_rate=0.2, seed=3, steps=4000)
    counts = np.zeros(50)
    sizes = []
    for keys in sampler:
        persons = np.asarray(keys, dtype=np.int64) % 50
        assert len(set(persons)) == len(persons)  # a person at most once per step
        counts[persons] += 1
        sizes.append(len(keys))
    rate = counts / 4000
    # Each person independently with probability 0.2: 4000 draws, standard error 0.0063.
    assert np.all(np.abs(rate - 0.2) < 0.03)
    assert np.var(sizes) == pytest.approx(50 * 0.2 * 0.8, rel=0.15)  # binomial batch sizes


def test_per_person_gradient_is_clipped_once_as_a_whole():
    """The fast path's clipped sum over a person batch equals, computed by hand, the sum over
    persons of (the gradient of the mean of their rows' losses) clipped to the norm."""
    torch.manual_seed(0)
    x, y, persons = persons_table(n_persons=12)
    data = PersonRows(features=x, labels=y, persons=persons, max_rows=5, seed=0)
    batch = [data[key] for key in range(len(data))]
    features = torch.stack([b[0] for b in batch])
    targets = torch.stack([torch.stack([b[1], b[2]], dim=-1) for b in batch])
    model = TabularMLP(5, (8,))
    bce = nn.BCEWithLogitsLoss(reduction="none")

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (bce(out, t[..., 0]) * t[..., 1]).sum() / len(out)

    clip = 0.05
    fast = fast_clipped_sum(model=model, loss_fn=loss_fn, inputs=features, targets=targets,
                            max_grad_norm=clip)
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for key in range(len(data)):
        rows = data.rows_drawn(key)
        model.zero_grad()
        out = model(torch.from_numpy(x[rows]))
        bce(out, torch.from_numpy(y[rows])).mean().backward()
        grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads.values()))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for name, grad in grads.items():
            expected[name] += factor * grad
    for name, grad in expected.items():
        torch.testing.assert_close(fast[name], grad, rtol=1e-4, atol=1e-6)


def test_split_keeps_each_person_in_one_part_and_moves_nobody_else():
    _, _, persons = persons_table(n_persons=300)
    series = pd.Series(persons)
    parts = split_by_person(series, test_fraction=0.2, val_fraction=0.15, seed=4)
    owner = {}
    for name, positions in zip(("train", "val", "test"), parts[:3], strict=True):
        for person in set(persons[positions]):
            assert owner.setdefault(person, name) == name
    assert sum(len(p) for p in parts[:3]) == len(persons)
    # Removing one person changes no one else's part (the split reads only a person's id).
    dropped = series[series != persons[0]].reset_index(drop=True)
    again = split_by_person(dropped, test_fraction=0.2, val_fraction=0.15, seed=4)
    for name, positions in zip(("train", "val", "test"), again[:3], strict=True):
        assert all(owner[p] == name for p in set(dropped.to_numpy()[positions]))


def test_the_person_loader_samples_persons_not_rows():
    from ml_core.data import EncodedSplit, TabularEncoder

    x, y, persons = persons_table()
    encoder = TabularEncoder.from_statistics(
        numeric=tuple(f"f{i}" for i in range(5)), categorical=(), medians={}, means={},
        scales={}, with_missing_indicator=(), levels={})
    split = EncodedSplit(
        x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y,
        ids_train=np.arange(len(y)), ids_val=np.arange(len(y)), ids_test=np.arange(len(y)),
        encoder=encoder, positive_label="1", method="by_person", seed=0,
        person_column="person", persons_train=persons, persons_val=persons)
    loader = make_person_loader(split, batch_size=10, seed=0, max_rows=4)
    assert len(loader.dataset) == 40 and len(loader) == 4  # persons per batch: 10


def test_a_person_level_training_resumes_exactly(tmp_path):
    """The person sampler's state (which persons, which of their rows) travels in the
    checkpoint: an interrupted person-level training resumes to the uninterrupted result."""
    from ml_core.checkpoints import checkpoint_epochs
    from ml_core.data import EncodedSplit, TabularEncoder
    from ml_core.spec import PrivacyConfig, TrainConfig
    from ml_core.trainer import TrainingCancelled, train_model

    x, y, persons = persons_table(n_persons=120)
    encoder = TabularEncoder.from_statistics(
        numeric=tuple(f"f{i}" for i in range(5)), categorical=(), medians={}, means={},
        scales={}, with_missing_indicator=(), levels={})
    split = EncodedSplit(
        x_train=x, y_train=y, x_val=x[:100], y_val=y[:100], x_test=x, y_test=y,
        ids_train=np.arange(len(y)), ids_val=np.arange(100), ids_test=np.arange(len(y)),
        encoder=encoder, positive_label="1", method="by_person", seed=0,
        person_column="person", persons_train=persons, persons_val=persons[:100])
    train = TrainConfig(epochs=4, batch_size=8, learning_rate=1e-2, hidden_sizes=(8,),
                        patience=4)
    privacy = PrivacyConfig(target_epsilon=2.0, max_rows_per_person=3)
    reference = train_model(split=split, train=train, privacy=privacy,
                            select_on_validation=False)

    def stop_before_epoch_four() -> bool:
        # Asked before every step: stop at the first ask after epoch 3's checkpoint.
        return checkpoint_epochs(tmp_path).get("training") == 3

    path = tmp_path / "training.pt"
    with pytest.raises(TrainingCancelled):
        train_model(split=split, train=train, privacy=privacy, checkpoint_path=path,
                    should_stop=stop_before_epoch_four, select_on_validation=False)
    assert checkpoint_epochs(tmp_path) == {"training": 3}
    resumed = train_model(split=split, train=train, privacy=privacy, checkpoint_path=path,
                          select_on_validation=False)
    for (name, left), right in zip(resumed.model.state_dict().items(),
                                   reference.model.state_dict().values(), strict=True):
        assert torch.equal(left, right), name
    assert resumed.privacy == reference.privacy
    assert resumed.privacy["sample_rate"] == pytest.approx(1 / 15)  # 120 persons, 8 a batch
