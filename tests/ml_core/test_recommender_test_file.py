"""A given test file for recommendation (issue 13): a file with the interactions' columns
whose positives are the test, each test user scored from their training-file history; a
test user without one is refused by name (ml_core.families.recommendation.split_given_test).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ml_core.data import attach_labelled_test
from ml_core.families import get_family, recommendation
from ml_core.pipeline import run_training
from verticals.retail.demo_data import shopper_interactions
from verticals.retail.vertical import RECOMMENDATION, RECOMMENDATION_SAMPLE_MAPPING

MAPPING = RECOMMENDATION_SAMPLE_MAPPING
USER, ITEM = MAPPING.role("user"), MAPPING.role("item")
FAST = dataclasses.replace(RECOMMENDATION.train, epochs=3)
NONPRIVATE = dataclasses.replace(RECOMMENDATION.privacy, enabled=False)


def published_split(n_rows: int = 3000, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every third user's last three rows as a test file (as a benchmark publishes a
    per-user split); the rest is the training file."""
    frame = shopper_interactions(n_rows, seed)
    users = sorted(frame[USER].unique())
    tested = frame[USER].isin(users[::3])
    last = frame.groupby(USER).cumcount(ascending=False) < 3
    is_test = (tested & last).to_numpy()
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)


def test_the_given_positives_are_the_test_and_histories_come_from_training(tmp_path):
    train, test = published_split()
    assert get_family("recommender").supports.labelled_test_file
    combined = attach_labelled_test(train, test)
    result = run_training(frame=combined, mapping=MAPPING, spec=RECOMMENDATION,
                          privacy=NONPRIVATE, train=FAST, artifact_dir=tmp_path)
    split, p = result.split, result.predictions
    assert split["method"] == "given_test_file"
    positives = test[test["purchased"] == 1]
    # Every positive of the test file is judged (none repeats a training item here).
    repeats = positives.merge(train[[USER, ITEM]].drop_duplicates(), on=[USER, ITEM])
    assert split["test"] == len(positives) - len(repeats)
    judged = positives.groupby(USER)[ITEM].apply(lambda s: "|".join(sorted(set(s))))
    assert dict(zip(p["user"], p["held_out"], strict=True)) == judged.to_dict()
    # The test rows follow the training rows in the combined frame.
    assert (p["row_id"] >= len(train)).all()
    # No user's list holds an item of their training history.
    history = train[train["purchased"] == 1].groupby(USER)[ITEM].apply(set)
    for user, top in zip(p["user"], p["top_k"], strict=True):
        assert not set(top.split("|")) & history[user]
    assert result.metrics["ndcg@10"] == pytest.approx(p["ndcg@10"].mean())
    assert any("the given test file's" in note for note in result.notes)


def test_validation_is_each_users_last_training_positive():
    train, test = published_split()
    data = recommendation.interactions(attach_labelled_test(train, test), MAPPING)
    split = recommendation.split_given_test(data)
    assert not (split.test & ~data.given_test).any()
    assert split.test.sum() == data.given_test.sum()
    trained = np.bincount(data.users[~data.given_test])
    assert split.val.sum() == int((trained >= 3).sum())
    for user in np.unique(data.users[split.val]):
        mine = data.users == user
        # The validation positive is the user's latest training positive.
        assert data.order[mine & split.val].item() == data.order[mine & split.train].max() + 1


def test_a_test_user_without_training_history_is_refused_by_name():
    train, test = published_split()
    stranger = test.iloc[:2].assign(**{USER: "U9999"})
    combined = attach_labelled_test(train, pd.concat([test, stranger]))
    data = recommendation.interactions(combined, MAPPING)
    with pytest.raises(ValueError, match=r"1 users of the test file have no positive "
                                         r"interaction in the training file \('U9999'\)"):
        recommendation.split_given_test(data)
    (issue,) = [i for i in recommendation.validate(combined, MAPPING, RECOMMENDATION)
                if i.code == "test_file_mismatch"]
    assert "'U9999'" in issue.message and issue.severity == "error"
    # A user whose training rows are all negatives has no history either.
    first = test[USER].iloc[0]
    negatives_only = train.assign(purchased=train["purchased"].where(train[USER] != first, 0))
    with pytest.raises(ValueError, match=rf"\('{first}'\)"):
        recommendation.split_given_test(recommendation.interactions(
            attach_labelled_test(negatives_only, test), MAPPING))
    # A test file with no positive at all judges nothing.
    with pytest.raises(ValueError, match="no positive interaction on a known item"):
        recommendation.split_given_test(recommendation.interactions(
            attach_labelled_test(train, test.assign(purchased=0)), MAPPING))


def test_ratings_in_the_test_file_do_not_move_training_positives():
    train, test = published_split()
    mapping = dataclasses.replace(MAPPING, target="rating")
    rated = train.assign(rating=np.arange(len(train)) % 5 + 1)
    base = recommendation.interactions(
        attach_labelled_test(rated, test.assign(rating=1)), mapping)
    other = recommendation.interactions(
        attach_labelled_test(rated, test.assign(rating=5)), mapping)
    train_pairs = [{(b.user_names[u - 1], b.item_names[i - 1]) for u, i in
                    zip(b.users[~b.given_test], b.items[~b.given_test], strict=True)}
                   for b in (base, other)]
    assert train_pairs[0] == train_pairs[1]
    # The test rows are judged against each user's training mean: all 1s are below it.
    assert not base.given_test.any() and other.given_test.sum() > 0


def test_a_declared_catalogue_holds_for_the_test_file_too():
    train, test = published_split()
    products = pd.DataFrame({ITEM: sorted(set(train[ITEM]) | set(test[ITEM]))})
    products["aisle"] = [f"aisle {n % 3}" for n in range(len(products))]
    declared = recommendation.with_catalogue(train, products[ITEM], attributes=products)
    combined = attach_labelled_test(declared, test)
    assert recommendation.declared_catalogue(combined) == tuple(products[ITEM])
    assert recommendation.catalogue_attributes(combined) is \
        recommendation.catalogue_attributes(declared)
