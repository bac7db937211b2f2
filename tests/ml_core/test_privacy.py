"""Privacy accounting, cross-checked against Opacus' PRV accountant and Google's
dp-accounting (PLD and RDP), plus the Opacus wiring traps."""

from __future__ import annotations

import dataclasses

import dp_accounting
import pytest
import torch
from opacus.accountants import PRVAccountant
from opacus.data_loader import DPDataLoader
from opacus.grad_sample import GradSampleModule

from ml_core import fast_clipping
from ml_core import privacy as dp
from ml_core.models import TabularMLP
from ml_core.trainer import TrainingCancelled, make_loader, train_model

# Fractional orders near 1 matter for small epsilons; integers up to 256 for large ones.
RDP_ORDERS = [1 + x / 20 for x in range(1, 100)] + list(range(6, 257))


def dp_accounting_epsilons(*, noise_multiplier, sample_rate, steps, delta,
                           preprocessing_noise=None):
    """(PLD, RDP) epsilon of the steps, composed with the preprocessing Gaussian if given."""
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
        ),
        steps,
    )
    if preprocessing_noise is not None:
        event = dp_accounting.ComposedDpEvent(
            [dp_accounting.GaussianDpEvent(preprocessing_noise), event])
    pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    pld.compose(event)
    rdp = dp_accounting.rdp.RdpAccountant(RDP_ORDERS)
    rdp.compose(event)
    return pld.get_epsilon(delta), rdp.get_epsilon(delta)


def test_reported_epsilon_matches_dp_accounting(private_run):
    result, _ = private_run
    report = result.privacy
    assert report["enabled"] and report["accountant"] == "prv"
    target = report["target_epsilon"]
    assert target - dp.EPSILON_SEARCH_TOLERANCE <= report["epsilon"] <= target
    # The run's one figure composes its released preprocessing statistics (a Gaussian) with
    # the steps, at its delta less the vocabulary thresholds' share.
    pre = report["stages"][0]
    assert pre["stage"] == "preprocessing"
    pld, rdp = dp_accounting_epsilons(
        noise_multiplier=report["noise_multiplier"], sample_rate=report["sample_rate"],
        steps=report["steps"], delta=report["delta"] - pre["threshold_delta"],
        preprocessing_noise=pre["noise_multiplier"],
    )
    assert report["epsilon"] == pytest.approx(pld, rel=0.02)
    assert report["epsilon"] <= rdp * 1.01  # RDP is an upper bound


def test_delta_is_at_most_one_over_ten_n(private_run):
    report = private_run[0].privacy
    n_train = private_run[0].split["train"]
    assert report["delta"] <= 1 / (10 * n_train)
    assert dp.resolve_delta(None, 390) == 1e-5
    assert dp.resolve_delta(None, 500_000) == pytest.approx(2e-7)
    assert dp.resolve_delta(1e-2, 1000) == pytest.approx(1e-4)  # lowered to 1/(10n)
    assert dp.resolve_delta(1e-6, 1000) == 1e-6


def test_steps_follow_the_poisson_schedule(private_run, spec):
    report = private_run[0].privacy
    steps_per_epoch = round(1 / report["sample_rate"])
    assert report["steps"] == report["planned_steps"] == spec.train.epochs * steps_per_epoch


@pytest.mark.parametrize(
    ("noise", "rate", "steps", "delta"),
    [(1.54, 1 / 7, 35, 1e-5), (0.9, 0.02, 500, 1e-6), (4.0, 0.25, 12, 1e-4)],
)
def test_epsilon_for_equals_opacus_prv_accountant(noise, rate, steps, delta):
    accountant = PRVAccountant()
    accountant.history = [(noise, rate, steps)]
    expected = accountant.get_epsilon(delta)
    got = dp.epsilon_for(noise_multiplier=noise, sample_rate=rate, steps=steps, delta=delta)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("target", [1.0, 8.0])
def test_noise_search_lands_just_under_the_target(target):
    sigma = dp.noise_multiplier_for(target_epsilon=target, delta=1e-5, sample_rate=0.1,
                                    steps=50)
    spent = dp.epsilon_for(noise_multiplier=sigma, sample_rate=0.1, steps=50, delta=1e-5)
    assert target - dp.EPSILON_SEARCH_TOLERANCE <= spent <= target


def test_history_epsilon_is_non_decreasing_and_ends_at_the_report(private_run):
    result, _ = private_run
    epsilons = [entry["epsilon"] for entry in result.history]
    assert all(a <= b for a, b in zip(epsilons, epsilons[1:], strict=False))
    # The training curve follows the SGD stage; the run's figure composes it with the
    # preprocessing stage (docs/privacy.md).
    stages = {stage["stage"]: stage for stage in result.privacy["stages"]}
    assert epsilons[-1] == stages["sgd"]["epsilon"]
    assert epsilons[-1] <= result.privacy["epsilon"] + 1e-9


def test_early_stopping_spends_less_than_the_target(frame, spec, split):
    # A learning rate of zero freezes the model, so validation never improves after the
    # first epoch and training stops once patience runs out.
    frozen = dataclasses.replace(spec.train, learning_rate=0.0, patience=1)
    trained = train_model(split=split, train=frozen, privacy=spec.privacy)
    assert trained.stopped_early and trained.epochs_run == 2
    report = trained.privacy
    assert report["steps"] < report["planned_steps"]
    assert report["epsilon"] < report["target_epsilon"]
    assert report["epsilon"] == pytest.approx(trained.history[-1]["epsilon"])


def test_cancel_raises_with_privacy_spent_so_far(frame, spec, split):
    calls = []

    def stop_on_third_epoch() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(TrainingCancelled) as caught:
        train_model(split=split, train=spec.train, privacy=spec.privacy,
                    should_stop=stop_on_third_epoch)
    spent = caught.value.privacy
    assert spent["enabled"] and spent["steps"] > 0
    assert 0 < spent["epsilon"] < spent["target_epsilon"]


def test_opacus_wiring_keeps_poisson_sampling_and_mean_reduction(frame, spec, split):
    model = dp.prepare_module(TabularMLP(split.n_features, (8,)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = make_loader(split.x_train, split.y_train, batch_size=64, seed=0)
    wrapped = dp.make_private(model=model, optimizer=optimizer, loader=loader,
                              config=spec.privacy, epochs=2)
    assert isinstance(wrapped.loader, DPDataLoader)
    assert isinstance(wrapped.module, (GradSampleModule, fast_clipping.BookkeepingModule))
    assert wrapped.clipping["fast_path"]
    assert wrapped.module.loss_reduction == "mean"
    assert wrapped.optimizer.loss_reduction == "mean"
    assert wrapped.optimizer.expected_batch_size == len(split.y_train) // len(loader)
    assert dp.unwrap(wrapped.module) is model
    assert wrapped.steps == 0 and wrapped.epsilon() == 0.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_impossible_budget_is_refused():
    with pytest.raises(dp.PrivacyBudgetError):
        dp.noise_multiplier_for(target_epsilon=1e-4, delta=1e-5, sample_rate=1.0, steps=1)
