"""ml_core.privacy_ledger: composition across runs, checked against dp-accounting."""

from __future__ import annotations

import dp_accounting
import pytest

from ml_core.privacy import epsilon_for
from ml_core.privacy_ledger import Charge, basic_composition, compose, fits, remaining


def dp_sgd(noise: float, rate: float, steps: int, delta: float = 1e-5) -> Charge:
    return Charge(epsilon=epsilon_for(noise_multiplier=noise, sample_rate=rate, steps=steps,
                                      delta=delta),
                  delta=delta, noise_multiplier=noise, sample_rate=rate, steps=steps)


def pld_epsilon(charges: list[Charge], delta: float) -> float:
    events = [
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(c.sample_rate,
                                                dp_accounting.GaussianDpEvent(c.noise_multiplier)),
            c.steps)
        for c in charges
    ]
    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    accountant.compose(dp_accounting.ComposedDpEvent(events))
    return accountant.get_epsilon(delta)


def test_basic_composition_sums_epsilons_and_deltas():
    charges = [Charge(epsilon=1.5, delta=1e-5), Charge(epsilon=2.0, delta=2e-5)]
    assert basic_composition(charges) == pytest.approx((3.5, 3e-5))
    total = compose(charges)  # no histories: basic composition
    assert total.method == "basic" and total.epsilon == pytest.approx(3.5)
    assert total.delta == pytest.approx(3e-5)


def test_one_run_is_its_own_epsilon():
    charge = dp_sgd(1.1, 0.2, 30)
    assert compose([charge]).epsilon == pytest.approx(charge.epsilon)


def test_prv_composition_of_heterogeneous_runs_matches_dp_accounting():
    charges = [dp_sgd(1.1, 0.2, 30), dp_sgd(0.9, 0.1, 40), dp_sgd(1.3, 0.25, 20)]
    total = compose(charges)
    assert total.method == "prv"
    assert total.delta == pytest.approx(3e-5)
    reference = pld_epsilon(charges, total.delta)
    assert total.epsilon == pytest.approx(reference, rel=0.02)
    assert total.epsilon >= reference - 0.02  # an upper bound, up to PLD's discretisation
    assert total.epsilon < total.basic_epsilon  # tighter than the plain sum


def test_charges_without_history_are_added_on_top():
    runs = [dp_sgd(1.1, 0.2, 30), dp_sgd(1.1, 0.2, 30)]
    bound = Charge(epsilon=3.0, delta=1e-5)  # a failed run: its target, no history
    total = compose([*runs, bound])
    assert total.method == "prv"
    assert total.epsilon == pytest.approx(pld_epsilon(runs, 2e-5) + 3.0, rel=0.02)
    assert total.epsilon <= total.basic_epsilon


def test_budget_arithmetic():
    assert remaining(budget=10, spent=7.5) == 2.5
    assert remaining(budget=10, spent=12) == 0.0
    assert fits(budget=10, spent=7, request=3)
    assert not fits(budget=10, spent=7, request=3.01)
