"""Synthetic retail tables: weekly store x item sales, and shopper interactions.

Weekly sales (:func:`weekly_sales`)
-----------------------------------
``store`` (S1, S2, ...) x ``item`` (I1, I2, ...) series of ``units_sold`` per week
(``week``: ISO dates, Fridays from 2021-01-01). Each series has a level (store size
times item appeal), a trend of up to +-15 % a year, yearly seasonality (a summer or a
winter peak, amplitude 10-30 %), a Christmas/Black-Friday uplift (weeks 47-52, +35 %),
``holiday`` weeks (+15 %) and random ``promo`` weeks (about 12 %, +25 %, with ``price``
10 % lower), plus multiplicative noise (sd 6 %). ``region`` (north, south) is a store
attribute used for the operational error-by-group report. No people's data: no planted
disparity; the region groups are there to show the report.

Shopper interactions (:func:`shopper_interactions`)
---------------------------------------------------
One row per product view or purchase: ``user_id``, ``product_id``, ``timestamp``,
``purchased`` (1 = bought, 0 = viewed only, about 25 %), and user attributes ``age`` and
``gender``. 240 products in 8 categories with Zipf-like popularity.

The planted disparity: shoppers aged 60+ (about 20 %) mostly buy from the two niche
categories (6 and 7: hobby, garden), whose products are a small share of all purchases;
younger shoppers buy across categories 0-5 with the popular products. A model trained on
everyone learns the majority's tastes and popularity first, so NDCG@10 is expected to be
lower for 60+ users (as for real minority-taste groups). Gender carries no planted effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_CATEGORIES = 6
NICHE_CATEGORIES = (4, 5)
N_PRODUCTS = 60
OLDER_SHARE = 0.2
OLDER_AGE = 60


def weekly_sales(n_rows: int, seed: int) -> pd.DataFrame:
    """Exactly ``n_rows`` rows of weekly sales for ``max(2, n_rows // 120)`` series."""
    rng = np.random.default_rng(seed)
    n_series = max(2, n_rows // 120)
    lengths = np.full(n_series, n_rows // n_series)
    lengths[: n_rows % n_series] += 1
    n_stores = max(1, int(round(np.sqrt(n_series))))
    weeks_total = int(lengths.max())
    start = pd.Timestamp("2021-01-01")
    store_size = rng.uniform(0.6, 1.6, n_stores)
    store_region = rng.choice(["north", "south"], n_stores)
    holiday_weeks = {1, 22, 27, 36}  # New Year, late May, early July, early September
    frames = []
    for number in range(n_series):
        store, item = number % n_stores, number // n_stores
        n_weeks = int(lengths[number])
        # Shorter series start later, so all series end on the same week.
        dates = start + pd.to_timedelta(7 * np.arange(weeks_total - n_weeks, weeks_total), "D")
        week_of_year = dates.isocalendar().week.to_numpy().astype(int)
        years = np.arange(weeks_total - n_weeks, weeks_total) / 52.0
        level = 120 * store_size[store] * rng.uniform(0.5, 2.0)
        trend = 1 + rng.uniform(-0.15, 0.15) * years
        peak = rng.choice([26, 1])
        amplitude = rng.uniform(0.1, 0.3)
        seasonal = 1 + amplitude * np.cos(2 * np.pi * (week_of_year - peak) / 52)
        christmas = np.where(week_of_year >= 47, 1.35, 1.0)
        holiday = np.isin(week_of_year, list(holiday_weeks)).astype(int)
        promo = (rng.random(n_weeks) < 0.12).astype(int)
        price = np.round(rng.uniform(2, 20) * (1 - 0.1 * promo), 2)
        noise = np.exp(rng.normal(0, 0.06, n_weeks))
        units = level * trend * seasonal * christmas * (1 + 0.15 * holiday) \
            * (1 + 0.25 * promo) * noise
        frames.append(pd.DataFrame({
            "store": f"S{store + 1}", "item": f"I{item + 1}",
            "week": dates.strftime("%Y-%m-%d"), "units_sold": np.round(units).astype(float),
            "price": price, "promo": promo, "holiday": holiday,
            "region": store_region[store],
        }))
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["week", "store", "item"], kind="stable").reset_index(drop=True)


def shopper_interactions(n_rows: int, seed: int) -> pd.DataFrame:
    """Exactly ``n_rows`` interaction rows (about 10 per user), time-ordered per user."""
    rng = np.random.default_rng(seed)
    category = np.arange(N_PRODUCTS) % N_CATEGORIES
    appeal = 1.0 / np.arange(1, N_PRODUCTS + 1) ** 0.8
    rng.shuffle(appeal)
    # Niche products are less popular overall: their appeal is damped.
    appeal = np.where(np.isin(category, NICHE_CATEGORIES), appeal * 0.5, appeal)
    rows = []
    user = 0
    start = pd.Timestamp("2024-01-01")
    while len(rows) < n_rows:
        user += 1
        older = rng.random() < OLDER_SHARE
        age = int(rng.integers(OLDER_AGE, 80) if older else rng.integers(18, OLDER_AGE))
        gender = str(rng.choice(["female", "male"]))
        taste = np.zeros(N_CATEGORIES)
        if older:
            taste[list(NICHE_CATEGORIES)] = rng.dirichlet([1.0, 1.0]) * 0.85
            taste[: NICHE_CATEGORIES[0]] = 0.15 / NICHE_CATEGORIES[0]
        else:
            taste[: NICHE_CATEGORIES[0]] = rng.dirichlet(np.ones(NICHE_CATEGORIES[0]) * 0.3)
        weights = appeal * taste[category]
        n_events = int(rng.integers(8, 17))
        products = rng.choice(N_PRODUCTS, size=n_events, replace=False, p=weights / weights.sum())
        times = start + pd.to_timedelta(np.sort(rng.uniform(0, 180, n_events)), "D")
        for product, when in zip(products, times, strict=True):
            rows.append({
                "user_id": f"U{user:04d}", "product_id": f"P{product + 1:03d}",
                "timestamp": when.strftime("%Y-%m-%d %H:%M:%S"),
                "purchased": int(rng.random() < 0.75), "age": age, "gender": gender,
            })
    return pd.DataFrame(rows[:n_rows])
