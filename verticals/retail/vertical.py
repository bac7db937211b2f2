"""The retail vertical: demand forecasting and product recommendation."""

from __future__ import annotations

from ml_core.spec import (
    Banding,
    ColumnMapping,
    ColumnRole,
    FairnessPolicy,
    FavourableOutcome,
    PrivacyConfig,
    PrivacyUnit,
    ProblemSpec,
    RoleHint,
    TaskType,
    TrainConfig,
)
from verticals.base import Problem, Vertical
from verticals.retail.demo_data import shopper_interactions, weekly_sales
from verticals.retail.guide import DEMAND_FORECAST_GUIDE, RECOMMENDATION_GUIDE

# What the privacy guarantee protects for this vertical, said plainly on every page.
STORE_NOTE = (
    "Sales are totals per store and item, not records of people: the unit protected is "
    "one series (one store-item history), and no customer appears in the data."
)

# Task roles beyond ColumnRole's tabular ones ("series", "covariate", "user", "item") are
# plain strings, the names ColumnMapping.roles and `--column ROLE=NAME` use.
DEMAND_FORECAST = ProblemSpec(
    key="demand_forecast",
    name="Demand forecasting",
    description=(
        "Forecasts the next weeks of sales for every store and product with one global "
        "model, judged against naive and seasonal-naive forecasts."
    ),
    task_type=TaskType.FORECASTING,
    hints=(
        RoleHint(role=ColumnRole.TARGET, required=True, names=(
            "units_sold", "weekly_sales", "sales", "quantity", "qty", "demand", "units",
            "volume", "revenue")),
        RoleHint(role=ColumnRole.TIME, required=True, names=(
            "date", "week", "week_start", "day", "period", "month", "timestamp")),
        RoleHint(role="series", names=(  # type: ignore[arg-type]
            "store", "store_id", "store_nbr", "shop", "item", "item_id", "sku", "product",
            "product_id", "dept", "department", "location")),
        RoleHint(role="covariate", names=(  # type: ignore[arg-type]
            "price", "promo", "promotion", "onpromotion", "on_promotion", "holiday",
            "holiday_flag", "discount", "event")),
    ),
    # Store attributes, audited as operational (not personal) groups.
    sensitive_hints=("region", "store_type", "store_format", "area"),
    metrics=("mase", "wape", "mae", "rmse"),
    primary_metric="mase",
    baseline="seasonal_naive",
    model_family="forecaster",
    privacy_unit=PrivacyUnit("series", role="series", note=STORE_NOTE),
    # Store-level sales hold no personal data: privacy off by default, available.
    privacy=PrivacyConfig(enabled=False, target_epsilon=3.0),
    fairness=FairnessPolicy(min_group_size=20, favourable=FavourableOutcome(
        positive=True, text="forecast accurately")),
    # Learning rate 3e-3 and batch 256: on Walmart.csv (44k training windows) this beat
    # the seasonal-naive WAPE within 10 epochs in about 20 s on a CPU.
    train=TrainConfig(epochs=30, batch_size=256, learning_rate=3e-3, hidden_sizes=(64, 32),
                      patience=6, horizon=8),
    retrain_cron="0 4 * * 1",  # Mondays 04:00, after the weekend's sales land
    min_rows=60,
)

RECOMMENDATION = ProblemSpec(
    key="recommendation",
    name="Product recommendation",
    description=(
        "Ranks the products each shopper is most likely to buy next from past views and "
        "purchases; audited for recommendation quality by shopper group and item exposure."
    ),
    task_type=TaskType.RANKING,
    hints=(
        RoleHint(role=ColumnRole.TARGET, names=(
            "purchased", "clicked", "bought", "converted", "rating", "score", "label")),
        RoleHint(role=ColumnRole.TIME, names=(
            "timestamp", "time", "datetime", "date", "event_time", "created_at")),
        RoleHint(role="user", required=True, names=(  # type: ignore[arg-type]
            "user_id", "user", "customer_id", "customer", "shopper_id", "client_id",
            "visitor_id")),
        RoleHint(role="item", required=True, names=(  # type: ignore[arg-type]
            "product_id", "item_id", "product", "item", "sku", "article_id")),
    ),
    sensitive_hints=("age", "gender", "sex", "region", "ethnicity"),
    banding=(Banding(column_hint="age", edges=(25, 40, 60)),),
    metrics=("ndcg@10", "recall@10", "hit_rate@10"),
    primary_metric="ndcg@10",
    baseline="popularity",
    model_family="recommender",
    privacy_unit=PrivacyUnit("user", role="user"),
    # Clipping bound 0.05: a user's whole BPR gradient (item factors near their small
    # initial scale) is mostly below 0.1, and a bound far above it only adds noise; on
    # 1,000 synthetic shoppers NDCG@10 went from 0.19 (bound 1) to 0.29 (0.1), above the
    # popularity baseline's 0.21 (docs/privacy.md).
    privacy=PrivacyConfig(enabled=True, target_epsilon=3.0, max_grad_norm=0.05),
    fairness=FairnessPolicy(min_disparate_impact_ratio=0.8, min_group_size=20,
                            favourable=FavourableOutcome(positive=True, text="recommended")),
    train=TrainConfig(epochs=20, batch_size=64, learning_rate=0.02, patience=5, top_k=10),
    retrain_cron="0 3 * * *",  # nightly: catalogues and tastes move fast
    min_rows=100,
)

FORECAST_SAMPLE_MAPPING = ColumnMapping(
    target="units_sold",
    sensitive=("region",),
    roles=(("series", "store"), ("series", "item"), ("time", "week"),
           ("covariate", "price"), ("covariate", "promo"), ("covariate", "holiday")),
)

RECOMMENDATION_SAMPLE_MAPPING = ColumnMapping(
    target="purchased",
    sensitive=("age", "gender"),
    roles=(("user", "user_id"), ("item", "product_id"), ("time", "timestamp")),
)

VERTICAL = Vertical(
    key="retail",
    name="Retail",
    description="Demand forecasting for stores and products; product recommendation.",
    problems=(
        Problem(spec=DEMAND_FORECAST, sample_data=weekly_sales,
                sample_mapping=FORECAST_SAMPLE_MAPPING, guide=DEMAND_FORECAST_GUIDE),
        Problem(spec=RECOMMENDATION, sample_data=shopper_interactions,
                sample_mapping=RECOMMENDATION_SAMPLE_MAPPING, guide=RECOMMENDATION_GUIDE),
    ),
)
