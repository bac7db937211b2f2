"""The privacy rules of DP-SGD, held against every registered model family's training path.

Each family trains one of its problems privately through ``ml_core.pipeline.run_training``
(small sizes); the one training loop's :func:`ml_core.training_loop.start` is observed, so
the checks below see exactly the plan (data, batch loss) and the wrapped module, optimiser
and loader that family trained with. One slip in one family's loop would fail here:

* the batch loss is a plain mean over rows (Opacus' ``loss_reduction="mean"``);
* an empty Poisson batch still steps, with pure noise, and the accountant counts it;
* the accountant's step count equals the planned steps;
* each sample's clipped gradient has norm at most ``max_grad_norm``, and the clipped sum
  of a batch is the sum of its samples' clipped gradients (per-sample, not per-batch);
* the noise's standard deviation is ``noise_multiplier * max_grad_norm``;
* the reported epsilon equals Google's dp-accounting PLD for the same sigma, q and steps.
"""

from __future__ import annotations

import math

import pytest
import torch
from dp_accounting import dp_event, pld
from torch import nn

from bench.family_plans import FamilyTraining, batch_of, families_with_problems, train_privately
from bench.groups.dp_families import FAMILIES as BENCHED_FAMILIES
from ml_core import families, training_loop
from ml_core.training_loop import LoopPlan, Started

# Opacus' hooks on a first layer whose input needs no gradient: expected, harmless.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

ROWS, EPOCHS = 300, 1
# 600: enough units to split; text and images are encoded by a frozen network first: fewer.
# The recommender's private item vocabulary needs a few hundred users (issue 14).
FAMILY_ROWS = {"text_encoder": 120, "sequence_regressor": 600, "image_classifier": 120,
               "recommender": 6000}
# A batch loss may draw its own randomness (the recommender's sampled negatives): it is then
# compared in expectation over this many seeds.
SEEDS = 30
BATCH_ROWS = 6  # rows of the batch the clipping checks use

FAMILY_IDS = sorted(families_with_problems())
_seen: dict[str, FamilyTraining] = {}


@pytest.fixture(params=FAMILY_IDS)
def seen(request) -> FamilyTraining:
    family = request.param
    if family not in _seen:  # one private training per family for all the rules
        _seen[family] = train_privately(family, rows=FAMILY_ROWS.get(family, ROWS),
                                        epochs=EPOCHS)
    return _seen[family]


def _registered_families() -> set[str]:
    # The family registry (ml_core.families.all_families) where it exists, less the test
    # plug-ins other tests register; before it, the name -> module table plus the tabular
    # model, which was not a family yet.
    if hasattr(families, "all_families"):
        return {family.name for family in families.all_families()
                if type(family).__module__.startswith("ml_core.")}
    return set(families.FAMILIES) | {"tabular_mlp"}


def test_every_family_has_a_problem_and_a_benchmark():
    # A family no problem uses would escape every rule below; one not benchmarked would
    # escape the step-cost targets.
    assert _registered_families() <= set(FAMILY_IDS)
    assert set(FAMILY_IDS) == set(BENCHED_FAMILIES)


# --- helpers on the family's own plan ------------------------------------------------------


def _fresh(seen: FamilyTraining) -> Started:
    """The family's training pieces again (same plan): a model untouched by training."""
    return training_loop.start(seen.plan)


def _no_dropout(model: nn.Module) -> None:
    # Per-sample gradients of one batch and of its rows one by one must see the same
    # function: dropout would draw other masks. Train mode stays on (Opacus needs it).
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def _batch(plan: LoopPlan, rows: list[int]) -> tuple:
    return batch_of(plan, rows)


def _clipped_sum(started: Started, plan: LoopPlan, batch: tuple) -> list[torch.Tensor]:
    """Opacus' (or the book-keeping) clipped sum of per-sample gradients, no noise."""
    optimizer = started.optimizer
    optimizer.zero_grad(set_to_none=True)
    for p in optimizer.params:
        p.summed_grad = None
        p.grad_sample = None
    loss, _ = plan.batch_loss(started.model, batch)
    loss.backward()
    optimizer.clip_and_accumulate()
    sums = [p.summed_grad.detach().clone().double() for p in optimizer.params]
    optimizer.zero_grad(set_to_none=True)
    return sums


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum(t.pow(2).sum() for t in tensors)))


def _empty_step(started: Started, plan: LoopPlan) -> torch.Tensor:
    """One step on an empty Poisson batch drawn by the family's own loader; returns every
    trainable parameter's resulting gradient, flattened."""
    sampler = started.loader.batch_sampler
    sampler.sample_rate = 1e-12  # the loader's next draw: an empty batch (almost surely)
    batch = next(iter(started.loader))
    assert len(batch[0]) == 0
    optimizer = started.optimizer
    optimizer.zero_grad(set_to_none=True)
    loss, rows = plan.batch_loss(started.model, batch)
    assert rows == 0
    loss.backward()
    optimizer.step()
    return torch.cat([p.grad.detach().reshape(-1).double() for p in optimizer.params])


# --- the rules -------------------------------------------------------------------------------


def _loss(plan: LoopPlan, model: nn.Module, batch: tuple, *, seed: int) -> tuple[float, int]:
    torch.manual_seed(seed)
    loss, rows = plan.batch_loss(model, batch)
    return float(loss.detach()), rows


def _stochastic(plan: LoopPlan, model: nn.Module, batch: tuple) -> bool:
    return _loss(plan, model, batch, seed=1)[0] != _loss(plan, model, batch, seed=2)[0]


def test_the_batch_loss_is_a_plain_mean_over_rows(seen):
    plan = seen.plan
    assert seen.started.optimizer.loss_reduction == "mean"
    model = _fresh(seen).model
    _no_dropout(model)
    rows = list(range(min(BATCH_ROWS, len(plan.dataset))))
    batch, doubled = _batch(plan, rows), _batch(plan, rows + rows)
    assert _loss(plan, model, doubled, seed=0)[1] == 2 * _loss(plan, model, batch, seed=0)[1]
    # A sum would double; a mean of the same rows twice is unchanged.
    if not _stochastic(plan, model, batch):
        once, twice = _loss(plan, model, batch, seed=0)[0], _loss(plan, model, doubled, seed=0)[0]
        assert twice == pytest.approx(once, rel=1e-5)
    else:
        once = sum(_loss(plan, model, batch, seed=s)[0] for s in range(SEEDS)) / SEEDS
        twice = sum(_loss(plan, model, doubled, seed=s)[0] for s in range(SEEDS)) / SEEDS
        assert twice == pytest.approx(once, rel=0.1)


def test_an_empty_poisson_batch_still_steps_and_is_counted(seen):
    started = _fresh(seen)
    before = started.wrapped.steps
    gradient = _empty_step(started, seen.plan)
    assert started.wrapped.steps == before + 1
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0  # noise only


def test_the_noise_std_is_sigma_times_the_clipping_bound(seen):
    started = _fresh(seen)
    gradient = _empty_step(started, seen.plan)
    optimizer = started.optimizer
    # Opacus divides the noisy sum by the expected batch size (loss_reduction="mean").
    noise = gradient * optimizer.expected_batch_size
    expected = seen.report["noise_multiplier"] * seen.report["max_grad_norm"]
    tolerance = 4 / math.sqrt(2 * len(noise))  # ~4 standard errors of a sample std
    assert float(noise.std()) == pytest.approx(expected, rel=max(tolerance, 0.02))
    assert abs(float(noise.mean())) < 4 * expected / math.sqrt(len(noise))


def test_the_accountant_counts_exactly_the_planned_steps(seen):
    report = seen.report
    steps_per_epoch = int(1 / report["sample_rate"])
    assert report["planned_steps"] == EPOCHS * steps_per_epoch
    assert report["steps"] == report["planned_steps"]
    assert seen.started.wrapped.steps == report["steps"]


def test_each_sample_is_clipped_to_the_bound(seen):
    plan = seen.plan
    started = _fresh(seen)
    _no_dropout(started.model)
    bound = seen.report["max_grad_norm"]
    rows = list(range(min(BATCH_ROWS, len(plan.dataset))))
    singles = [_clipped_sum(started, plan, _batch(plan, [row])) for row in rows]
    for single in singles:
        assert _norm(single) <= bound * (1 + 1e-5)
    together = _clipped_sum(started, plan, _batch(plan, rows))
    assert _norm(together) <= len(rows) * bound * (1 + 1e-5)
    if not _stochastic(plan, started.model, _batch(plan, rows)):
        # Clipped per sample, not per batch: the batch's clipped sum is its rows' sum.
        # (A loss that draws its own randomness, e.g. sampled negatives, gives each row
        # other draws alone than in a batch; only the bounds above apply to it.)
        summed = [sum(parts) for parts in zip(*singles, strict=True)]
        difference = _norm([a - b for a, b in zip(together, summed, strict=True)])
        assert difference <= 1e-4 * max(_norm(summed), 1e-12)
    # The report says which clipping path the family took, and why.
    clipping = seen.report["clipping"]
    assert isinstance(clipping["fast_path"], bool) and clipping["reason"]


def test_the_epsilon_equals_dp_accounting(seen):
    report = seen.report
    event = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(
            report["sample_rate"], dp_event.GaussianDpEvent(report["noise_multiplier"])),
        report["steps"])
    independent = pld.PLDAccountant(value_discretization_interval=1e-3).compose(
        event).get_epsilon(report["delta"])
    assert report["epsilon"] == pytest.approx(independent, rel=0.02, abs=0.01)
    assert report["epsilon"] <= report["target_epsilon"] + 1e-6
