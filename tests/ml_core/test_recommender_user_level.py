"""The recommender at user level (issue 14): item factors only in the artifact, users
computed from their own history, epsilon per user against dp-accounting, the private item
vocabulary's canary, and NDCG above popularity on data with structure."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from dp_accounting import dp_event, pld
from scipy.stats import norm

from ml_core.artifacts import METADATA_FILE, WEIGHTS_FILE
from ml_core.families import recommendation
from ml_core.pipeline import run_training
from ml_core.spec import ColumnMapping
from verticals.retail.vertical import RECOMMENDATION

pytestmark = pytest.mark.filterwarnings("ignore:Secure RNG turned off",
                                        "ignore:Optimal order is the")

MAPPING = ColumnMapping(target="", sensitive=("region",),
                        roles=(("user", "user"), ("item", "item")))
CLUSTERS, PER_CLUSTER, ITEMS_EACH = 4, 10, 6
TRAIN = dataclasses.replace(RECOMMENDATION.train, epochs=6, batch_size=256, seed=0)


def clustered(n_users: int, seed: int) -> pd.DataFrame:
    """Each user likes one cluster of items and holds ``ITEMS_EACH`` of its items, in row
    order (the time): every item is as popular as every other, so only the user's history
    tells which ones they want."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        cluster = int(rng.integers(CLUSTERS))
        region = str(rng.choice(["north", "south"]))
        chosen = rng.choice(PER_CLUSTER, ITEMS_EACH, replace=False) + cluster * PER_CLUSTER
        rows += [{"user": f"u{user:05d}", "item": f"i{item:03d}", "region": region}
                 for item in chosen]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def private(tmp_path_factory) -> tuple[pd.DataFrame, object]:
    frame = clustered(3000, 0)
    result = run_training(frame=frame, mapping=MAPPING, spec=RECOMMENDATION, train=TRAIN,
                          artifact_dir=tmp_path_factory.mktemp("user-level"))
    return frame, result


def test_the_artifact_holds_no_per_user_parameter(private) -> None:
    frame, result = private
    path = Path(result.artifact_path)
    state = torch.load(path / WEIGHTS_FILE, weights_only=True)
    metadata = json.loads((path / METADATA_FILE).read_text())
    n_users, n_items = frame["user"].nunique(), len(metadata["items"])
    assert n_items <= frame["item"].nunique()
    assert not any("user" in name for name in state)
    for name, tensor in state.items():
        # Every table is indexed by item (its row 0: no item); none by user.
        assert tensor.shape[0] == n_items + 1, name
        assert n_users + 1 not in tensor.shape, name
    # No user name, and no raw per-item count (the old popularity list), in the metadata.
    text = json.dumps(metadata)
    assert "users" not in metadata and "popularity" not in metadata
    assert not any(user in text for user in frame["user"].unique()[:200])
    assert "serving" in metadata["user_vectors"] or "scored" in metadata["user_vectors"]


def test_epsilon_per_user_equals_dp_accounting(private) -> None:
    frame, result = private
    privacy = result.privacy
    n_users = frame["user"].nunique()  # every user has training rows here
    batches = math.ceil(n_users / TRAIN.batch_size)
    # Sampled by user, at the accountant's rate, for every planned step.
    assert privacy["sample_rate"] == pytest.approx(1 / batches)
    assert privacy["steps"] == TRAIN.epochs * batches
    assert privacy["unit"]["name"] == "user" and privacy["unit"]["column"] == "user"
    assert privacy["contribution_bound"]["max_rows_per_person"] == \
        RECOMMENDATION.privacy.max_rows_per_person
    vocabulary = next(s for s in privacy["stages"] if s["stage"] == "item vocabulary")
    shares = privacy["budget_shares"]
    # The vocabulary's Gaussian is (its share of epsilon, its delta)-DP by itself.
    alone = pld.PLDAccountant(value_discretization_interval=1e-4).compose(
        dp_event.GaussianDpEvent(vocabulary["noise_multiplier"])).get_epsilon(
        shares["gaussian_delta"])
    assert alone == pytest.approx(shares["preprocessing_epsilon"], rel=0.02)
    event = dp_event.ComposedDpEvent([
        dp_event.GaussianDpEvent(vocabulary["noise_multiplier"]),
        dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(
            1 / batches, dp_event.GaussianDpEvent(privacy["noise_multiplier"])),
            TRAIN.epochs * batches)])
    independent = pld.PLDAccountant(value_discretization_interval=1e-3).compose(
        event).get_epsilon(privacy["delta"] - vocabulary["threshold_delta"])
    assert privacy["epsilon"] == pytest.approx(independent, rel=0.02)
    assert privacy["epsilon"] <= RECOMMENDATION.privacy.target_epsilon + 1e-6
    assert any("each user" in note for note in result.notes)
    assert set(result.fairness) == {"region"}


def test_private_ndcg_beats_popularity_on_data_with_structure(private) -> None:
    _, result = private
    popularity = result.baseline["metrics"]["ndcg@10"]
    assert result.metrics["ndcg@10"] > popularity + 0.05, (result.metrics, popularity)
    assert result.nonprivate_metrics["ndcg@10"] >= result.metrics["ndcg@10"] - 0.05


def test_users_are_scored_from_their_history_alone(private) -> None:
    frame, result = private
    loaded = recommendation.load(result.artifact_path)
    first = frame[frame["user"] == frame["user"].iloc[0]]
    # A stranger with the same history gets the same list: nothing is stored per user.
    stranger = first.assign(user="nobody-seen-before")
    ours = recommendation.predict(loaded, first)
    theirs = recommendation.predict(loaded, stranger)
    assert ours["item"].tolist() == theirs["item"].tolist() and len(ours) == 10
    assert not set(ours["item"]) & set(first["item"])
    # Their cluster's items come first.
    cluster = int(first["item"].iloc[0][1:]) // PER_CLUSTER
    wanted = {f"i{cluster * PER_CLUSTER + j:03d}" for j in range(PER_CLUSTER)} - set(first["item"])
    assert set(ours["item"].head(len(wanted))) == wanted


class Released:
    """The private vocabulary runs on ``frame`` release, over many seeds: the family's own
    user-level plan (the one its prepare hook uses) on the run's own split."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.data = recommendation.interactions(frame, MAPPING)
        self.split = recommendation.split_by_user_time(self.data)
        self.plan = recommendation.UserLevelPlan.for_users(
            privacy=RECOMMENDATION.privacy, n_users=len(self.data.user_names))
        self.noise = self.plan.noise

    def rate(self, item: str, runs: int) -> float:
        return sum(item in self.plan.vocabulary(self.data, self.split.train, seed=seed)
                   for seed in range(runs)) / runs


def canary_frame(holders: int) -> pd.DataFrame:
    """300 clustered users, and ``holders`` users holding the canary item on their only
    training row (three rows each: the last two are held out)."""
    crowd = clustered(300, 1)
    canary = pd.DataFrame({"user": [f"k{i}" for i in range(holders) for _ in range(3)],
                           "item": ["canary", "c1", "c2"] * holders, "region": "north"})
    return pd.concat([crowd, canary], ignore_index=True)


def test_a_canary_item_held_by_one_user_is_released_as_rarely_as_delta_says() -> None:
    released = Released(canary_frame(1))
    noise = released.noise
    bound = norm.sf((noise.threshold - 1.0) / noise.sigma)  # a whole user's weight
    assert bound * noise.max_rows <= noise.threshold_delta * (1 + 1e-9)
    assert released.rate("canary", runs=300) == 0.0  # expected 300 * bound, about 1e-4


def test_a_canary_item_held_by_threshold_users_appears_as_often_as_the_mechanism_says():
    noise = Released(canary_frame(1)).noise
    holders = round(noise.threshold)  # each holds one training item: weight 1 each
    released = Released(canary_frame(holders))
    assert released.noise == noise  # the same delta, hence the same noise
    expected = norm.sf((noise.threshold - holders) / noise.sigma)
    runs = 300
    rate = released.rate("canary", runs=runs)
    assert abs(rate - expected) < 4 * math.sqrt(expected * (1 - expected) / runs), (
        rate, expected)


def test_empty_slots_are_not_counted_as_exposure() -> None:
    # A user whose unseen known items run out gets fewer than k items (index 0 slots).
    exposure = recommendation.exposure_by_decile(np.array([[3, 0, 0]]),
                                                 np.array([1.0, 2.0, 9.0]))
    assert sum(row["recommended_share"] for row in exposure) == pytest.approx(1.0)
    # All of it on item 3's decile, the most popular item's (the highest one in use).
    assert [row["decile"] for row in exposure if row["recommended_share"]] == \
        [max(row["decile"] for row in exposure if row["catalogue_share"])]


def test_a_run_without_sensitive_columns_has_one_group_row_per_test_user() -> None:
    # (Today's code built an empty table there, and the audit refused it.)
    frame = clustered(50, 2).drop(columns="region")
    mapping = dataclasses.replace(MAPPING, sensitive=())
    data = recommendation.interactions(frame, mapping)
    users = np.unique(data.users)
    groups = recommendation._user_groups(frame, mapping, RECOMMENDATION, data, users)
    assert len(groups) == len(users) and list(groups.columns) == []
