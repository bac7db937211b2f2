"""One epsilon per run: the preprocessing mechanisms and the SGD steps in one accountant.

A private run spends its target ``(epsilon, delta)`` in three parts, for one privacy unit
(a person, or a row when no person column is mapped):

* the released preprocessing statistics (:mod:`ml_core.private_statistics`): one Gaussian
  mechanism over all of them together, since one person moves every histogram by at most
  1 in L2 norm; its share is ``preprocessing_fraction`` of epsilon, and half that fraction
  of delta;
* the thresholds of the category vocabularies: a level only one person holds is released
  with probability at most ``threshold_delta`` (the other half of the preprocessing delta);
* DP-SGD with Poisson sampling of persons: the rest of delta, and of epsilon whatever the
  one composition leaves (:func:`sgd_target_for`: at least the basic share), calibrated by
  Opacus' PRV accountant (:func:`ml_core.privacy.noise_multiplier_for`).

The figure reported, charged and printed is the composition of the first and last parts in
Google's ``dp-accounting`` PLD accountant (a pessimistic, hence upper, bound) at their
combined delta, with the threshold delta added: ``(epsilon, delta)`` with ``delta`` the
run's whole delta. Basic composition of the parts' own bounds is also an upper bound; the
smaller of the two is reported, and it never exceeds the target.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import dp_accounting
from dp_accounting import pld
from scipy.optimize import brentq
from scipy.stats import norm

from ml_core.privacy import PrivacyBudgetError, noise_multiplier_for, resolve_delta
from ml_core.spec import PrivacyConfig

# The PLD grid: 1e-3 composes a preprocessing Gaussian with hundreds of subsampled steps in
# about 0.2 s and differs from 1e-4 in the fourth digit (pessimistic either way).
PLD_DISCRETISATION = 1e-3
COMPOSITION = "pld"
# Bisection steps for the SGD share under one composition: 6 halve the gap to about 1.5%.
SGD_TARGET_ITERATIONS = 6


@dataclass(frozen=True)
class BudgetShares:
    """How one run's target ``(epsilon, delta)`` is divided between its stages."""

    target_epsilon: float
    delta: float
    preprocessing_epsilon: float
    gaussian_delta: float  # the preprocessing Gaussian's delta
    threshold_delta: float  # the vocabulary thresholds' delta
    sgd_epsilon: float
    sgd_delta: float

    def to_dict(self) -> dict:
        return asdict(self)


def share_budget(config: PrivacyConfig, *, n_units: int,
                 preprocessing: bool = True) -> BudgetShares:
    """Divide ``config``'s target between preprocessing and SGD for ``n_units`` training
    persons (delta as :func:`ml_core.privacy.resolve_delta` gives it for that many).
    ``preprocessing=False``: a run that releases no statistic of the rows; the SGD steps
    get the whole target."""
    fraction = float(config.preprocessing_fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError("preprocessing_fraction must be strictly between 0 and 1")
    if not preprocessing:
        fraction = 0.0
    delta = resolve_delta(config.delta, n_units)
    target = float(config.target_epsilon)
    return BudgetShares(
        target_epsilon=target, delta=delta,
        preprocessing_epsilon=fraction * target,
        gaussian_delta=fraction * delta / 2, threshold_delta=fraction * delta / 2,
        sgd_epsilon=(1 - fraction) * target, sgd_delta=(1 - fraction) * delta,
    )


def gaussian_delta(*, noise_multiplier: float, epsilon: float) -> float:
    """The exact delta of the Gaussian mechanism (sensitivity 1, noise ``noise_multiplier``)
    at ``epsilon`` (Balle & Wang 2018, theorem 8)."""
    z = float(noise_multiplier)
    return float(norm.cdf(0.5 / z - epsilon * z)
                 - math.exp(epsilon) * norm.cdf(-0.5 / z - epsilon * z))


def gaussian_noise_multiplier(*, epsilon: float, delta: float) -> float:
    """The smallest noise multiplier of a sensitivity-1 Gaussian mechanism that is
    ``(epsilon, delta)``-DP (the analytic Gaussian mechanism, solved numerically)."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError("epsilon must be positive and delta in (0, 1)")
    low, high = 1e-3, 1.0
    while gaussian_delta(noise_multiplier=high, epsilon=epsilon) > delta:
        high *= 2
    return float(brentq(lambda z: gaussian_delta(noise_multiplier=z, epsilon=epsilon) - delta,
                        low, high, xtol=1e-10)) * (1 + 1e-9)


def run_event(*, preprocessing_noise_multiplier: float | None, sgd_noise_multiplier: float,
              sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    """The run's mechanisms as one dp-accounting event (the threshold delta aside)."""
    events: list[dp_accounting.DpEvent] = []
    if preprocessing_noise_multiplier is not None:
        events.append(dp_accounting.GaussianDpEvent(preprocessing_noise_multiplier))
    if steps > 0:
        events.append(dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(
                sample_rate, dp_accounting.GaussianDpEvent(sgd_noise_multiplier)),
            int(steps)))
    return dp_accounting.ComposedDpEvent(events)


def composed_epsilon(*, preprocessing_noise_multiplier: float | None,
                     sgd_noise_multiplier: float, sample_rate: float, steps: int,
                     delta: float) -> float:
    """Epsilon at ``delta`` of the preprocessing Gaussian and ``steps`` Poisson-subsampled
    Gaussian steps, composed in dp-accounting's PLD accountant."""
    accountant = pld.PLDAccountant(value_discretization_interval=PLD_DISCRETISATION)
    accountant.compose(run_event(
        preprocessing_noise_multiplier=preprocessing_noise_multiplier,
        sgd_noise_multiplier=sgd_noise_multiplier, sample_rate=sample_rate, steps=steps))
    return float(accountant.get_epsilon(delta))


def sgd_target_for(*, shares: BudgetShares, preprocessing_noise_multiplier: float,
                   n_units: int, batch_size: int, epochs: int) -> float:
    """The SGD stage's target epsilon: the largest (to about 1%) whose steps, composed with
    the preprocessing Gaussian in one PLD, keep the run within its target. At least the
    basic share ``shares.sgd_epsilon`` (the split assumes basic composition; composing in
    one accountant is tighter, and this hands the difference to the SGD steps).

    The steps and rate are those the private loop will use: ``ceil(n_units / batch)``
    batches per epoch at rate ``1 / batches``; the noise is the loop's own search
    (:func:`ml_core.privacy.noise_multiplier_for`, cached), so the loop draws the same."""
    batches = math.ceil(n_units / max(1, min(batch_size, n_units)))
    rate, steps = 1 / batches, epochs * batches
    sgd_delta = resolve_delta(shares.sgd_delta, n_units)
    pld_delta = shares.gaussian_delta + sgd_delta

    def composed(sgd_epsilon: float) -> float:
        sigma = noise_multiplier_for(target_epsilon=sgd_epsilon, delta=sgd_delta,
                                     sample_rate=rate, steps=steps)
        return composed_epsilon(preprocessing_noise_multiplier=preprocessing_noise_multiplier,
                                sgd_noise_multiplier=sigma, sample_rate=rate, steps=steps,
                                delta=pld_delta)

    low, high = shares.sgd_epsilon, shares.target_epsilon
    for _ in range(SGD_TARGET_ITERATIONS):
        middle = (low + high) / 2
        if composed(middle) <= shares.target_epsilon:
            low = middle
        else:
            high = middle
    return low


def composed_report(*, sgd: dict, shares: BudgetShares, preprocessing: dict,
                    unit: dict, contribution: dict) -> dict:
    """The run's privacy report: the SGD report (``sgd``, from
    :meth:`ml_core.privacy.PrivateTraining.report`) with ``epsilon`` and ``delta`` replaced
    by the composed figure, and the unit, the contribution bound and a breakdown by stage.

    ``preprocessing`` is :meth:`ml_core.private_statistics.PreprocessingNoise.report`."""
    steps = int(sgd.get("steps") or 0)
    # None: the run releases no preprocessing statistic (its stage costs nothing).
    z_pre = (None if preprocessing["noise_multiplier"] is None
             else float(preprocessing["noise_multiplier"]))
    pld_delta = shares.gaussian_delta + shares.sgd_delta
    pld_eps = composed_epsilon(
        preprocessing_noise_multiplier=z_pre,
        sgd_noise_multiplier=float(sgd["noise_multiplier"]),
        sample_rate=float(sgd["sample_rate"]), steps=steps, delta=pld_delta)
    sgd_eps = float(sgd["epsilon"] or 0.0)
    basic = shares.preprocessing_epsilon + sgd_eps
    epsilon = min(pld_eps, basic)
    if epsilon > shares.target_epsilon + 1e-6:
        raise PrivacyBudgetError(
            f"composed epsilon {epsilon:.4f} exceeds the target {shares.target_epsilon}")
    return {
        **sgd,
        "epsilon": epsilon,
        "delta": shares.delta,
        "target_epsilon": shares.target_epsilon,
        "composition": COMPOSITION if pld_eps <= basic else "basic",
        "composed_epsilon_pld": pld_eps,
        "composed_epsilon_basic": basic,
        "unit": unit,
        "contribution_bound": contribution,
        "budget_shares": shares.to_dict(),
        "stages": [
            {"stage": "preprocessing", "epsilon": shares.preprocessing_epsilon,
             "delta": shares.gaussian_delta + shares.threshold_delta,
             "mechanism": ("Gaussian histograms (noise multiplier "
                           f"{z_pre:.3g}) with thresholded vocabularies" if z_pre is not None
                           else "none: no statistic of the rows is released"),
             **{key: preprocessing[key] for key in ("noise_multiplier", "sigma", "threshold",
                                                     "threshold_delta", "n_histograms",
                                                     "released")}},
            {"stage": "sgd", "epsilon": sgd_eps, "delta": shares.sgd_delta,
             "mechanism": "Poisson-subsampled Gaussian (DP-SGD)",
             "noise_multiplier": sgd["noise_multiplier"], "sample_rate": sgd["sample_rate"],
             "steps": steps},
        ],
    }
