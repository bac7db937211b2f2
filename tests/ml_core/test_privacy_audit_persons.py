"""The empirical audit with canary PERSONS: several rows each, membership of a whole person.

A person-level run keeps the audit's lower bound below its claim; the same canary persons
against a row-level claim (each row taken as a person: contributions unbounded per person)
show that claim is false for a person, and the audit says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_core import privacy_audit as pa
from ml_core.data import encode_and_split
from ml_core.spec import ColumnMapping, PrivacyConfig, TrainConfig

TRAIN = TrainConfig(epochs=8, batch_size=32, learning_rate=1e-2, patience=1000, seed=0)


def _persons_frame(n_persons: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    persons = np.repeat(np.arange(n_persons), rng.integers(1, 4, n_persons))
    x = rng.normal(size=(len(persons), 20))
    logits = x[:, 0] - 0.8 * x[:, 1]
    frame = pd.DataFrame({f"f{i}": x[:, i] for i in range(20)})
    frame["person"] = persons
    frame["y"] = np.where(rng.random(len(persons)) < 1 / (1 + np.exp(-logits)), "yes", "no")
    return frame


def test_canary_persons_hold_several_rows_and_one_coin_each():
    frame = _persons_frame()
    mapping = ColumnMapping(target="y", positive_label="yes", exclude=("person",),
                            roles=(("privacy_unit", "person"),))
    split = encode_and_split(frame, mapping, TRAIN, person_column="person")
    canaries = pa.make_canaries(split, k=16, seed=1, rows_per_canary=4)
    assert canaries.x.shape == (64, split.n_features)
    assert np.array_equal(canaries.owner, np.repeat(np.arange(16), 4))
    audited = pa.with_canaries(split, canaries)
    added = audited.persons_train[len(split.y_train):]
    # Each member canary's 4 rows share one new person code, no one else's.
    assert len(added) == 4 * canaries.member.sum()
    assert len(set(added)) == canaries.member.sum()
    assert not set(added) & set(split.persons_train)


@pytest.mark.slow
def test_a_person_level_run_stays_below_its_claim_for_canary_persons():
    frame = _persons_frame()
    mapping = ColumnMapping(target="y", positive_label="yes", exclude=("person",),
                            roles=(("privacy_unit", "person"),))
    split = encode_and_split(frame, mapping, TRAIN, person_column="person")
    result = pa.audit_tabular(split, train=TRAIN, privacy=PrivacyConfig(target_epsilon=1.0),
                              canaries=256, seed=0, rows_per_canary=4)
    assert 0 < result.claimed_epsilon <= 1.0 + 1e-6
    assert result.bound.epsilon_lower_bound < result.claimed_epsilon
    assert result.consistent


@pytest.mark.slow
def test_a_row_level_claim_is_caught_for_persons_with_many_rows():
    # Unbounded contributions: each of a canary person's 32 rows is sampled and clipped as a
    # person of its own, so the person leaks far more than the row-level epsilon claims.
    frame = _persons_frame()
    mapping = ColumnMapping(target="y", positive_label="yes", exclude=("person",))
    split = encode_and_split(frame, mapping, TRAIN)
    result = pa.audit_tabular(split, train=TRAIN, privacy=PrivacyConfig(target_epsilon=0.5),
                              canaries=256, seed=0, rows_per_canary=32)
    assert result.claimed_epsilon <= 0.5 + 1e-6
    assert result.bound.epsilon_lower_bound > result.claimed_epsilon
    assert not result.consistent
