"""Synthetic credit applications with a planted, documented bias in the historical labels.

The table looks like what a lender would export (one row per application, the outcome in
``default``), so demos and the contract tests exercise the same path as a real upload.

How the data are generated
--------------------------
Applicants: ``foreign_worker`` is "yes" for 30 % of rows, ``sex`` is "female" for 38 %,
``age`` is 19-75 (mean about 37), ``personal_status`` is the marital status (single,
married, divorced, widowed; depends on age only). Financial features depend on these the
way they often do in real portfolios, which makes some of them *proxies* for the sensitive
attributes:

* ``employment_years`` (years with the current employer) is 45 % shorter for foreign
  workers (shorter time in the country) and capped by ``age - 18``;
* ``income`` (monthly, EUR) rises with age and tenure, is 22 % lower (log -0.25) for foreign
  workers and 11 % lower (log -0.12) for women;
* ``housing`` is "own" more often with age and income and less often (log-odds -1.0) for
  foreign workers; ``savings`` rise with income and are lower for foreign workers.

The true financial risk is a logistic model of the financial columns only
(:func:`financial_log_odds`): the instalment burden (``loan_amount / duration_months`` as a
share of ``income``), duration, ``credit_history``, ``savings``, ``employment_years``,
``housing``, ``existing_credits`` and ``purpose``. It never looks at sex, age, marital
status or foreign-worker status directly.

The planted disparity
---------------------
The historical labels are biased against foreign workers: ``default`` is drawn as
Bernoulli(sigmoid(financial_log_odds + PLANTED_BIAS_LOG_ODDS * [foreign_worker == "yes"])),
with ``PLANTED_BIAS_LOG_ODDS = 1.0``, i.e. the odds of a recorded default are multiplied
by e = 2.72 for foreign workers *at the same financial risk* (think of past collection
practice writing their loans off sooner). Measured on 200,000 rows:

* overall default rate 0.31; foreign workers 0.52, others 0.22: a difference of 0.29;
* without the planted term (``planted_bias_log_odds=0``) the same applicants give 0.33 vs
  0.22: about 0.10 of the gap comes from finances (the proxies), about 0.19 is planted;
* a logistic regression of ``default`` on [financial_log_odds, foreign] recovers
  coefficients (1.00, 1.00): the planted term is independent of the financial risk;
* sex and age carry no planted label bias; their gaps (women 0.32 vs men 0.31; under-25s
  0.39 vs 0.26 for 50+) come only through the financial features.

A model trained without the sensitive columns ("unaware") still learns the bias through
the proxies above (tenure, income, housing, savings), so its fairness audit shows a
selection-rate gap for ``foreign_worker``: exactly what the audit is there to catch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PLANTED_BIAS_LOG_ODDS = 1.0
FOREIGN_WORKER_SHARE = 0.30
FEMALE_SHARE = 0.38

CREDIT_HISTORIES = ("no_credits", "all_paid", "existing_paid", "delayed", "critical")
CREDIT_HISTORY_SHARES = (0.05, 0.07, 0.53, 0.09, 0.26)
PURPOSES = ("car_new", "car_used", "furniture", "radio_tv", "education", "business",
            "repairs", "other")
PURPOSE_SHARES = (0.23, 0.10, 0.18, 0.28, 0.05, 0.10, 0.03, 0.03)
SAVINGS_LEVELS = ("<100", "100-500", "500-1000", ">=1000", "unknown")
DURATIONS = np.array([6, 9, 12, 15, 18, 24, 30, 36, 48, 60])

# Log-odds contributions of the financial features to the true default risk.
_HISTORY_RISK = {"no_credits": 0.4, "all_paid": -0.6, "existing_paid": 0.0, "delayed": 1.2,
                 "critical": 1.7}
_SAVINGS_RISK = {"<100": 0.5, "100-500": 0.1, "500-1000": -0.5, ">=1000": -1.0,
                 "unknown": 0.0}
_HOUSING_RISK = {"rent": 0.25, "free": 0.2, "own": 0.0}
_PURPOSE_RISK = {"education": 0.3, "business": 0.2, "car_used": -0.3, "radio_tv": -0.15}
_PURPOSE_SIZE = {"car_new": 0.3, "car_used": 0.2, "business": 0.4, "education": 0.1,
                 "radio_tv": -0.3, "repairs": -0.4}
_RISK_INTERCEPT = -2.2

COLUMNS = ("applicant_id", "age", "sex", "personal_status", "foreign_worker", "income",
           "loan_amount", "duration_months", "credit_history", "employment_years", "savings",
           "housing", "purpose", "existing_credits", "default")


def credit_applications(
    n_rows: int, seed: int, *, planted_bias_log_odds: float = PLANTED_BIAS_LOG_ODDS
) -> pd.DataFrame:
    """``n_rows`` synthetic credit applications; ``default`` is 1 for a recorded default.

    The same ``(n_rows, seed)`` always gives the same table. ``planted_bias_log_odds=0``
    gives the unbiased labels for the same applicants (the label draw uses its own stream),
    so the planted part of the gap can be measured.
    """
    if n_rows < 1:
        raise ValueError("n_rows must be positive")
    rng = np.random.default_rng(seed)
    foreign = rng.random(n_rows) < FOREIGN_WORKER_SHARE
    female = rng.random(n_rows) < FEMALE_SHARE
    age = np.clip(np.round(19 + rng.gamma(3.0, 6.0, n_rows)), 19, 75).astype(int)
    personal_status = _marital_status(age, rng)

    tenure = rng.gamma(2.0, 3.5, n_rows) * np.where(foreign, 0.55, 1.0)
    employment_years = np.round(np.minimum(tenure, age - 18), 1)
    log_income = (7.55 + 0.02 * (np.minimum(age, 55) - 19)
                  + 0.03 * np.minimum(employment_years, 15)
                  - 0.25 * foreign - 0.12 * female + rng.normal(0.0, 0.35, n_rows))
    income = np.round(np.exp(log_income), -1)

    p_own = _sigmoid(-0.3 + 0.05 * (age - 35) + 0.8 * (log_income - 7.9) - 1.0 * foreign)
    draw = rng.random(n_rows)
    housing = np.where(draw < 0.07, "free", np.where(draw < 0.07 + 0.93 * p_own, "own", "rent"))

    savings_score = 0.9 * (log_income - 7.9) - 0.3 * foreign + rng.normal(0.0, 1.0, n_rows)
    savings = np.array(SAVINGS_LEVELS[:4])[np.digitize(savings_score, (-0.1, 0.7, 1.3))]
    savings = np.where(rng.random(n_rows) < 0.15, "unknown", savings)

    credit_history = rng.choice(CREDIT_HISTORIES, size=n_rows, p=CREDIT_HISTORY_SHARES)
    purpose = rng.choice(PURPOSES, size=n_rows, p=PURPOSE_SHARES)
    size_offset = np.array([_PURPOSE_SIZE.get(p, 0.0) for p in purpose])
    log_amount = 7.9 + 0.5 * (log_income - 7.9) + size_offset + rng.normal(0.0, 0.55, n_rows)
    loan_amount = np.clip(np.round(np.exp(log_amount), -1), 250, 25_000)
    raw_duration = 4 + loan_amount / 220 * np.exp(rng.normal(0.0, 0.35, n_rows))
    duration_months = DURATIONS[np.abs(raw_duration[:, None] - DURATIONS).argmin(axis=1)]
    heavy_history = np.isin(credit_history, ("existing_paid", "critical"))
    existing_credits = np.minimum(1 + rng.poisson(0.3 + 0.4 * heavy_history), 4)

    frame = pd.DataFrame({
        "applicant_id": [f"A{seed % 1000:03d}-{i:06d}" for i in range(1, n_rows + 1)],
        "age": age,
        "sex": np.where(female, "female", "male"),
        "personal_status": personal_status,
        "foreign_worker": np.where(foreign, "yes", "no"),
        "income": income,
        "loan_amount": loan_amount,
        "duration_months": duration_months,
        "credit_history": credit_history,
        "employment_years": employment_years,
        "savings": savings,
        "housing": housing,
        "purpose": purpose,
        "existing_credits": existing_credits,
    })
    # A separate stream for the label draw: changing the planted bias changes only labels.
    label_rng = np.random.default_rng([seed, 1])
    log_odds = financial_log_odds(frame) + planted_bias_log_odds * foreign
    frame["default"] = (label_rng.random(n_rows) < _sigmoid(log_odds)).astype(int)
    return frame


def financial_log_odds(frame: pd.DataFrame) -> np.ndarray:
    """The true default log-odds from the financial columns alone (no sensitive attribute)."""
    burden = frame["loan_amount"] / frame["duration_months"] / frame["income"]
    return np.asarray(
        _RISK_INTERCEPT
        + 12.0 * (burden - 0.065)
        + 0.025 * (frame["duration_months"] - 20)
        + frame["credit_history"].map(_HISTORY_RISK).astype(float)
        + frame["savings"].map(_SAVINGS_RISK).astype(float)
        - 0.12 * (frame["employment_years"].clip(upper=10) - 5)
        + frame["housing"].map(_HOUSING_RISK).astype(float)
        + 0.2 * (frame["existing_credits"] - 1)
        + frame["purpose"].map(lambda p: _PURPOSE_RISK.get(p, 0.0)).astype(float),
        dtype=float,
    )


def _marital_status(age: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    statuses = np.array(["single", "married", "divorced", "widowed"])
    # Rows: age <25, 25-34, 35-49, 50+; columns: the statuses above.
    shares = np.array([
        [0.80, 0.18, 0.02, 0.00],
        [0.45, 0.45, 0.10, 0.00],
        [0.20, 0.60, 0.18, 0.02],
        [0.10, 0.60, 0.18, 0.12],
    ])
    cumulative = shares.cumsum(axis=1)[np.digitize(age, (25, 35, 50))]
    picked = (rng.random(len(age))[:, None] > cumulative).sum(axis=1)
    return statuses[np.minimum(picked, len(statuses) - 1)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
