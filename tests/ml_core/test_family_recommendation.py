"""The recommendation family on synthetic shopper interactions: ranking metrics against
sklearn, per-user time hold-out, NDCG by group against pandas, the planted disparity,
exposure, privacy against dp-accounting, reload."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from dp_accounting import dp_event, pld
from sklearn.metrics import ndcg_score

from ml_core.families import recommendation
from ml_core.families.recommendation import rank_top_k, user_ranking_metrics
from ml_core.pipeline import run_training
from ml_core.spec import ColumnMapping
from verticals.retail.demo_data import shopper_interactions
from verticals.retail.vertical import RECOMMENDATION, RECOMMENDATION_SAMPLE_MAPPING

FAST = dataclasses.replace(RECOMMENDATION.train, epochs=8)
NONPRIVATE = dataclasses.replace(RECOMMENDATION.privacy, enabled=False)


@pytest.fixture(scope="module")
def shoppers() -> pd.DataFrame:
    return shopper_interactions(3000, 1)


@pytest.fixture(scope="module")
def result(shoppers, tmp_path_factory):
    return run_training(frame=shoppers, mapping=RECOMMENDATION_SAMPLE_MAPPING,
                        spec=RECOMMENDATION, privacy=NONPRIVATE, train=FAST,
                        artifact_dir=tmp_path_factory.mktemp("rec"))


def test_ranking_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((30, 40))
    relevance = (rng.random((30, 40)) < 0.08).astype(int)
    relevance[relevance.sum(axis=1) == 0, 0] = 1
    top = rank_top_k(scores, [set() for _ in range(30)], 10)
    relevant = [set(np.flatnonzero(row) + 1) for row in relevance]
    ours = user_ranking_metrics(top, relevant, 10)
    for row in range(30):
        reference = ndcg_score(relevance[row:row + 1], scores[row:row + 1], k=10)
        assert ours["ndcg"][row] == pytest.approx(reference)
        hits = len(set(top[row]) & relevant[row])
        assert ours["recall"][row] == pytest.approx(hits / len(relevant[row]))
        assert ours["hit_rate"][row] == float(hits > 0)
    # Excluded items never appear.
    excluded = rank_top_k(scores[:1], [set(top[0][:3])], 10)
    assert not set(excluded[0]) & set(top[0][:3])


def test_holdout_is_each_users_last_positives(shoppers, result) -> None:
    assert result.split["method"] == "per_user_time"
    p = result.predictions
    bought = shoppers[shoppers["purchased"] == 1]
    for _, row in p.head(25).iterrows():
        mine = bought[bought["user_id"] == row["user"]].sort_values("timestamp")
        held = set(row["held_out"].split("|"))
        assert set(mine["product_id"].iloc[-len(held):]) == held
        # Recommendations skip everything the user bought before the test.
        earlier = set(mine["product_id"].iloc[:-len(held)])
        assert not earlier & set(row["top_k"].split("|"))
    assert any("leave-last-out" in note for note in result.notes)


def test_beats_popularity_and_reports_same_keys(result) -> None:
    assert set(RECOMMENDATION.metrics) <= set(result.metrics)
    assert result.baseline["name"] == "popularity"
    assert set(result.baseline["metrics"]) == set(result.metrics)
    assert result.metrics["ndcg@10"] > result.baseline["metrics"]["ndcg@10"]
    p = result.predictions
    assert result.metrics["ndcg@10"] == pytest.approx(p["ndcg@10"].mean())
    json.dumps(result.to_dict())


def test_ndcg_by_group_matches_pandas_and_finds_the_planted_gap(result) -> None:
    p = result.predictions
    for attribute in ("age", "gender"):
        report = result.fairness[attribute]
        assert report["kind"] == "personal"
        means = p.groupby(attribute)["ndcg@10"].mean()
        for group, value in means.items():
            assert report["by_group"][group]["ndcg@10"] == pytest.approx(value)
            assert report["by_group"][group]["count"] == int((p[attribute] == group).sum())
    age = result.fairness["age"]["by_group"]
    younger = p[p["age"] != "60+"]["ndcg@10"].mean()
    assert age["60+"]["ndcg@10"] < younger
    assert result.fairness_passed == all(r["passed"] for r in result.fairness.values())


def test_exposure_and_top_k_charts(result) -> None:
    exposure = result.charts["exposure"]
    assert [row["decile"] for row in exposure] == list(range(1, 11))
    for key in ("catalogue_share", "recommended_share", "popularity_baseline_share"):
        assert sum(row[key] for row in exposure) == pytest.approx(1.0)
    # Popularity puts (nearly) everything in the top deciles.
    assert exposure[-1]["popularity_baseline_share"] > exposure[0]["popularity_baseline_share"]
    for chart in result.charts["top_k"]:
        assert len(chart["items"]) == 10 and chart["held_out"]


def test_reload_recommends_the_same_lists(shoppers, result) -> None:
    loaded = recommendation.load(result.artifact_path)
    assert loaded.metadata["model_family"] == "recommender"
    p = result.predictions.head(10)
    history = shoppers[shoppers["user_id"].isin(p["user"])]
    held = {(u, i) for u, items in zip(p.user, p.held_out, strict=True)
            for i in items.split("|")}
    history = history[[(u, i) not in held for u, i in
                       zip(history.user_id, history.product_id, strict=True)]]
    # Viewed-only rows are not positives in training: drop them too, as the model did.
    history = history[history["purchased"] == 1]
    ranked = recommendation.predict(loaded, history)
    for _, row in p.iterrows():
        items = ranked[ranked["user"] == row["user"]].sort_values("rank")["item"].tolist()
        assert items == row["top_k"].split("|")
    unknown = recommendation.predict(loaded, pd.DataFrame({"user_id": ["new"],
                                                           "product_id": ["P001"]}))
    assert len(unknown) == 10 and "P001" not in set(unknown["item"])


def test_implicit_feedback_without_target_and_ratings() -> None:
    frame = shopper_interactions(400, 2)
    implicit = dataclasses.replace(RECOMMENDATION_SAMPLE_MAPPING, target="")
    data = recommendation.interactions(frame, implicit)
    assert data.dropped_negatives == 0 and "every row" in data.how_positive
    rated = frame.assign(rating=np.arange(len(frame)) % 5 + 1)
    mapping = dataclasses.replace(RECOMMENDATION_SAMPLE_MAPPING, target="rating")
    data = recommendation.interactions(rated, mapping)
    # At or above the user's own mean: one user's ratings never move another's positives.
    own_mean = rated.groupby("user_id")["rating"].transform("mean")
    assert data.dropped_negatives == int((rated["rating"] < own_mean).sum())
    first = rated["user_id"].iloc[0]
    shifted = rated.assign(rating=rated["rating"].where(rated["user_id"] != first, 100))
    again = recommendation.interactions(shifted, mapping)

    def others(found) -> set:  # noqa: ANN001
        return {(found.user_names[u - 1], found.item_names[i - 1])
                for u, i in zip(found.users, found.items, strict=True)
                if found.user_names[u - 1] != first}

    assert others(again) == others(data)


def test_validate(shoppers) -> None:
    assert recommendation.validate(shoppers, RECOMMENDATION_SAMPLE_MAPPING,
                                   RECOMMENDATION) == []
    codes = [i.code for i in recommendation.validate(
        shoppers, ColumnMapping(target="purchased"), RECOMMENDATION)]
    assert codes == ["user_required", "item_required"]
    varying = shoppers.copy()
    varying.loc[0, "gender"] = "other"
    codes = {i.code for i in recommendation.validate(varying, RECOMMENDATION_SAMPLE_MAPPING,
                                                     RECOMMENDATION)}
    assert "attribute_varies" in codes


@pytest.mark.slow
def test_private_run_spends_its_budget_by_an_independent_accountant(tmp_path) -> None:
    frame = shopper_interactions(6000, 3)
    result = run_training(frame=frame, mapping=RECOMMENDATION_SAMPLE_MAPPING,
                          spec=RECOMMENDATION, train=dataclasses.replace(FAST, epochs=4),
                          artifact_dir=tmp_path)
    privacy = result.privacy
    assert privacy["enabled"] and 0 < privacy["epsilon"] <= RECOMMENDATION.privacy.target_epsilon
    vocabulary = privacy["stages"][0]
    event = dp_event.ComposedDpEvent([
        dp_event.GaussianDpEvent(vocabulary["noise_multiplier"]),
        dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(
            privacy["sample_rate"], dp_event.GaussianDpEvent(privacy["noise_multiplier"])),
            privacy["steps"])])
    independent = pld.PLDAccountant(value_discretization_interval=1e-3).compose(
        event).get_epsilon(privacy["delta"] - vocabulary["threshold_delta"])
    assert independent == pytest.approx(privacy["epsilon"], rel=0.05, abs=0.05)
    assert result.nonprivate_metrics is not None and result.nonprivate_fairness is not None
    assert any("each user" in note for note in result.notes)
    loaded = recommendation.load(result.artifact_path)
    assert loaded.metadata["privacy"]["epsilon"] == pytest.approx(privacy["epsilon"])
