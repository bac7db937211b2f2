"""An independent account of a person-level run's epsilon (Google's dp-accounting PLD), for
the tests that check a run's one composed figure."""

from __future__ import annotations

import dp_accounting
import pytest
from dp_accounting import pld

from ml_core.spec import PrivacyConfig


def assert_composed_epsilon(privacy: dict, *, batches: int, epochs: int,
                            target: float = 3.0) -> None:
    """``privacy`` (a run's report) spent its preprocessing Gaussian at its share
    ``(f * target, f * delta / 2)``, and its epsilon is, within 2 %, dp-accounting's
    composition of that Gaussian with ``epochs * batches`` steps sampled at ``1 / batches``,
    at the run's delta less the vocabulary thresholds' share. A run that releases no
    preprocessing statistic (its stage has no noise) is the SGD steps alone at the run's
    whole delta."""
    pre = {stage["stage"]: stage for stage in privacy["stages"]}["preprocessing"]
    sgd = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        1 / batches, dp_accounting.GaussianDpEvent(privacy["noise_multiplier"])),
        epochs * batches)
    accountant = pld.PLDAccountant(value_discretization_interval=1e-4)
    if pre["noise_multiplier"] is None:
        assert pre["epsilon"] == 0 and pre["threshold_delta"] == 0
        accountant.compose(sgd)
    else:
        fraction = PrivacyConfig().preprocessing_fraction
        alone = pld.PLDAccountant(value_discretization_interval=1e-4)
        alone.compose(dp_accounting.GaussianDpEvent(pre["noise_multiplier"]))
        assert alone.get_epsilon(privacy["delta"] * fraction / 2) == pytest.approx(
            fraction * target, rel=0.02)
        accountant.compose(dp_accounting.ComposedDpEvent([
            dp_accounting.GaussianDpEvent(pre["noise_multiplier"]), sgd]))
    independent = accountant.get_epsilon(privacy["delta"] - pre["threshold_delta"])
    assert privacy["epsilon"] == pytest.approx(independent, rel=0.02)
    assert privacy["epsilon"] <= target + 1e-6
