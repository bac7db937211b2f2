"""The analyst's guides to the retail problems (Markdown, shown in the web UI)."""

DEMAND_FORECAST_GUIDE = """\
## Demand forecasting

Forecasts the next weeks (or days, months) of sales for every store and product at once,
with one model that learns from all series together.

### What to upload
- Long format: **one row per series and period**, e.g. `store, item, week, units_sold`.
- **Series** columns (role *series*, one or more: store, item, SKU): together they name one
  series. With none, the whole file is one series.
- A **date** column (role *time*): ISO dates (2024-03-01), or day-first dates such as
  05/02/10 (5 February 2010) as in Walmart's public file. The spacing (daily, weekly,
  monthly) is detected and sets the season (7, 52, 12).
- The **target**: units or sales per period (numbers).
- Optional **covariates** (role *covariate*): price, promotion, holiday, store events.
  They are read at the dates being forecast, so they must be known in advance. Weather
  or CPI are only known afterwards: leave them out, or supply their forecasts.
- Enough history: at least two horizons plus ten periods; a season (52 weeks) or more
  lets the model and the seasonal-naive baseline use last year's pattern.

### How it is tested
The last *horizon* periods (8 by default) of every series are the test; the 8 before are
validation; the model never trains on either. Each forecast starts from the last known
week, as it would in use.

### Reading the metrics
- **WAPE**: total absolute error / total sales. 0.10 = off by 10 % of volume.
- **MASE** (primary): error relative to last season's same-period value on the training
  history. Below 1 beats that rule of thumb.
- **MAE / RMSE**: average error in units; RMSE weighs big misses more.
- The **baseline** is the best of *naive* (repeat the last week), *seasonal naive*
  (repeat the same week last year) and *seasonal drift* (the same week last year, shifted
  by how much the 13-week average has changed since); all are listed.
- **Error by group** (if you mark store attributes such as region as sensitive) compares
  each group's error relative to its series' typical level. These are operational groups,
  not people.

### Privacy
Store-level sales are business data, so differential privacy is off by default; you can
switch it on (it then protects one whole series: its windows are sampled as one unit).
"""

RECOMMENDATION_GUIDE = """\
## Product recommendation

Recommends the top 10 products each shopper is most likely to buy next, learnt from past
views and purchases (implicit feedback).

### What to upload
- **One row per interaction**: `user_id, product_id, timestamp` (roles *user*, *item*,
  *time*).
- Optional outcome (target): *purchased* or *clicked* (0/1; only 1 rows count as
  positives) or a *rating* (ratings at or above the mean count). Without one, every row
  is a positive.
- Optional **shopper attributes** (age, gender, region) to audit recommendation quality
  by group: either as columns of the interactions file, or as a separate file with one
  row per user, which the platform joins on the user column (`--attributes FILE`).
  Attributes are audited, never used by the model.
- Users need three or more positives to be evaluated; at least ten such users.

### How it is tested
For every user, their **last** positive interactions in time are held out (the last two
when they have six or more, else the last one); the one before is validation. The model
ranks every product the user has not interacted with yet.

### Reading the metrics
- **NDCG@10** (primary): 1.0 = the held-out products are at the top of the list;
  position matters.
- **Recall@10**: share of held-out products that made the top 10. **HitRate@10**: share of
  users with at least one.
- The **baseline** recommends the most popular products: a model must beat it to be worth
  deploying.
- **NDCG@10 by group**: the worst group's NDCG should be at least 80 % of the best
  group's. The demo data plant a gap: shoppers aged 60+ prefer niche categories and get
  worse recommendations.
- **Exposure by popularity decile**: which share of the recommended slots goes to each
  tenth of the catalogue (1 = least popular), next to the popularity baseline's. A model
  that only shows the top decile starves the long tail.

### Privacy
On by default. The unit protected is one shopper, with all their interactions: shoppers
are sampled, each brings at most 8 interactions to a training step and their whole
contribution is clipped once (DP-SGD); the product list the model knows is itself chosen
privately (a product enters only if enough shoppers hold it, so small uploads of a few
dozen shoppers are refused). The model holds no shopper's vector: each shopper's
recommendations are computed from their own history when they are scored.
"""
