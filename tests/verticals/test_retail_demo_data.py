"""The retail sample generators: shapes, determinism, documented structure."""

from __future__ import annotations

import numpy as np

from verticals.retail.demo_data import OLDER_AGE, shopper_interactions, weekly_sales
from verticals.retail.vertical import VERTICAL


def test_weekly_sales_shape_and_structure() -> None:
    frame = weekly_sales(1000, 0)
    assert len(frame) == 1000
    assert frame.equals(weekly_sales(1000, 0)) and not frame.equals(weekly_sales(1000, 1))
    per_series = frame.groupby(["store", "item"]).size()
    assert per_series.min() >= 104  # two seasons of history for the seasonal features
    assert frame.groupby(["store", "item"])["week"].max().nunique() == 1  # aligned ends
    # Promotions lift sales within a series.
    lift = frame.groupby("promo")["units_sold"].mean()
    assert lift[1] > lift[0]


def test_interactions_plant_a_niche_taste_for_older_shoppers() -> None:
    frame = shopper_interactions(4000, 0)
    assert len(frame) == 4000
    assert frame.groupby("user_id")[["age", "gender"]].nunique().max().max() == 1
    niche = frame["product_id"].str[1:].astype(int).sub(1) % 6 >= 4
    older = frame["age"] >= OLDER_AGE
    assert niche[older].mean() > 0.6 > 0.1 > niche[~older].mean()
    assert 0.15 < frame.drop_duplicates("user_id")["age"].ge(OLDER_AGE).mean() < 0.25


def test_vertical_registers_two_problems() -> None:
    assert VERTICAL.key == "retail"
    assert [p.key for p in VERTICAL.problems] == ["demand_forecast", "recommendation"]
    forecast, recommend = VERTICAL.problems
    assert forecast.spec.privacy.enabled is False and recommend.spec.privacy.enabled is True
    assert np.isin(["user", "item", "time"],
                   [role for role, _ in recommend.sample_mapping.roles]).all()
