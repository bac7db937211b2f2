"""Encoding and splitting: train-only statistics, row ids, positive label, feature choice."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from ml_core.data import (
    OTHER_LEVEL,
    TabularEncoder,
    encode_and_split,
    encode_target,
    feature_columns,
    positive_label,
)
from ml_core.spec import ColumnMapping, TrainConfig


def test_default_features_leave_out_target_id_excluded_and_sensitive(frame, mapping):
    mapping = ColumnMapping(target="default", sensitive=("sex", "age"), id="customer_id",
                            exclude=("debt",))
    assert feature_columns(frame, mapping) == ("income", "purpose")


def test_sensitive_columns_are_features_only_when_listed(frame, mapping):
    mapping = ColumnMapping(target="default", sensitive=("sex",), features=("income", "sex"))
    assert feature_columns(frame, mapping) == ("income", "sex")


def test_split_is_disjoint_covers_all_rows_and_keeps_the_original_index(frame, split):
    ids = np.concatenate([split.ids_train, split.ids_val, split.ids_test])
    assert sorted(ids.tolist()) == frame.index.tolist()
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (390, 90, 120)
    assert split.summary()["method"] == "stratified"
    # Row ids point at the rows whose labels were encoded.
    labels = (frame.loc[split.ids_test, "default"] == "yes").astype(int).to_numpy()
    np.testing.assert_array_equal(labels, split.y_test)


def test_split_is_stratified_and_seeded(frame, spec, mapping, split):
    overall = split.y_train.tolist() + split.y_val.tolist() + split.y_test.tolist()
    share = np.mean(overall)
    for part in (split.y_train, split.y_val, split.y_test):
        assert abs(part.mean() - share) < 0.02
    again = encode_and_split(frame, mapping, spec.train)
    np.testing.assert_array_equal(split.ids_test, again.ids_test)
    other = encode_and_split(frame, mapping, TrainConfig(seed=spec.train.seed + 1))
    assert set(other.ids_test) != set(split.ids_test)


def test_encoder_statistics_come_from_training_rows_only(frame, spec, mapping, split):
    train_income = frame.loc[split.ids_train, "income"]
    assert split.encoder.medians["income"] == pytest.approx(train_income.median())
    # Changing held-out rows does not change what was learnt.
    poisoned = frame.copy()
    poisoned.loc[split.ids_test, "income"] = 1e9
    again = encode_and_split(poisoned, mapping, spec.train)
    assert again.encoder.to_dict() == split.encoder.to_dict()
    np.testing.assert_array_equal(again.x_train, split.x_train)


def test_numeric_columns_are_imputed_flagged_and_standardised(frame, split):
    names = split.encoder.feature_names
    assert "income__missing" in names
    income = split.x_train[:, names.index("income")]
    assert abs(income.mean()) < 1e-5 and abs(income.std() - 1) < 1e-4
    assert not np.isnan(split.x_test).any()
    flags = split.x_test[:, names.index("income__missing")]
    np.testing.assert_array_equal(flags, frame.loc[split.ids_test, "income"].isna().to_numpy())


def test_rare_and_unseen_levels_go_to_other():
    rows = pd.DataFrame({"colour": ["red"] * 10 + ["blue"] * 10 + ["teal"] * 2,
                         "size": np.arange(22.0)})
    encoder = TabularEncoder.fit(rows, ("colour", "size"))
    assert encoder.levels["colour"] == ("blue", "red")
    new = pd.DataFrame({"colour": ["teal", "mauve", "red", None], "size": [1.0, 2.0, 3.0, None]})
    encoded = encoder.transform(new)
    other = encoder.feature_names.index(f"colour={OTHER_LEVEL}")
    np.testing.assert_array_equal(encoded[:, other], [1, 1, 0, 1])
    assert encoded.shape == (4, encoder.n_features)


def test_encoder_round_trips_through_json_and_pickle(frame, split):
    for restored in (TabularEncoder.from_dict(split.encoder.to_dict()),
                     pickle.loads(pickle.dumps(split.encoder))):
        np.testing.assert_array_equal(restored.transform(frame), split.encoder.transform(frame))


def test_positive_label_is_the_minority_class_unless_given():
    german_style = pd.Series([1] * 70 + [2] * 30)
    assert positive_label(german_style, ColumnMapping(target="t")) == "2"
    assert positive_label(german_style, ColumnMapping(target="t", positive_label="1")) == "1"
    floats = pd.Series([1.0, 2.0, 2.0])
    np.testing.assert_array_equal(encode_target(floats, "1"), [1, 0, 0])
    assert positive_label(pd.Series(["no", "yes"] * 5), ColumnMapping(target="t")) == "yes"


def test_missing_targets_are_dropped_and_non_binary_targets_refused(spec, mapping, planted):
    frame = planted(200)
    frame.loc[frame.index[:3], "default"] = None
    split = encode_and_split(frame, mapping, spec.train)
    assert split.summary()["dropped_missing_target"] == 3
    assert split.summary()["train"] + split.summary()["val"] + split.summary()["test"] == 197
    frame["default"] = np.resize(["a", "b", "c"], len(frame))
    with pytest.raises(ValueError, match="not binary"):
        encode_and_split(frame, mapping, spec.train)
