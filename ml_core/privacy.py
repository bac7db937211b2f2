"""Differential privacy with Opacus: DP-SGD with Poisson sampling and a PRV accountant.

Three rules from experience (see DESIGN.md, "Traps"):

* Opacus' ``loss_reduction`` must match the loss's reduction ("mean" here, like
  ``BCEWithLogitsLoss()``), or per-sample gradients are silently scaled by the batch size.
* Poisson sampling stays on: shuffled fixed-size batches do not get the accountant's epsilon.
* The module is in ``train()`` mode when wrapped, or Opacus records no activations.

Epsilon comes from Opacus' PRV accountant. :func:`epsilon_for` reproduces
``PRVAccountant.get_epsilon`` step for step with Opacus' own building blocks, but computes
the single-step RDP curve (which only sizes the discretisation domain, and costs most of
the time) once per (sample rate, noise) pair instead of twice per call; a test checks it
against ``PRVAccountant`` itself and against Google's dp-accounting.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.analysis.prv import (
    Domain,
    PoissonSubsampledGaussianPRV,
    TruncatedPrivacyRandomVariable,
    compose_heterogeneous,
    discretize,
)
from opacus.validators import ModuleValidator
from scipy.optimize import brentq
from torch import nn, optim
from torch.utils.data import DataLoader

from ml_core import cancellation, fast_clipping
from ml_core.spec import PrivacyConfig

ACCOUNTANT = "prv"
# Opacus' default precision for PRV epsilon: the reported value is an upper bound that is
# at most this far above the estimate.
EPS_ERROR = 0.01
# The noise search stops when epsilon is within this much *below* the target.
EPSILON_SEARCH_TOLERANCE = 0.01
# Tolerance for the "spent <= target" guarantee (floating point only).
BUDGET_TOLERANCE = 1e-6
DEFAULT_DELTA = 1e-5
MIN_NOISE_MULTIPLIER = 0.1


class PrivacyBudgetError(ValueError):
    """The requested budget cannot be met (too small for the data size), or was exceeded."""


class CalibrationCancelled(Exception):
    """The noise search was stopped by the cancel check (:func:`stop_calibration_when`,
    which is :func:`ml_core.cancellation.stop_when`);
    no private step was taken, so nothing was spent."""

    def __init__(self) -> None:
        super().__init__("cancelled during noise calibration")
        self.privacy: dict = {}


# The noise search asks the caller's cancel check (ml_core.cancellation) between accountant
# evaluations, which can take a while for long schedules: every family's training loop
# honours it without passing it through each call.
stop_calibration_when = cancellation.stop_when


def _check_calibration_stop() -> None:
    if cancellation.requested():
        raise CalibrationCancelled()


def resolve_delta(configured: float | None, n_train: int) -> float:
    """Delta for ``n_train`` training rows: never above ``1 / (10 n)``.

    ``None`` means ``min(1e-5, 1 / (10 n))``. A configured delta larger than ``1 / (10 n)``
    is lowered to it: a delta near ``1 / n`` allows leaking one whole record.
    """
    if n_train <= 0:
        raise ValueError("no training rows")
    ceiling = 1.0 / (10 * n_train)
    if configured is None:
        return min(DEFAULT_DELTA, ceiling)
    if configured <= 0:
        raise ValueError("delta must be positive")
    return min(float(configured), ceiling)


OPACUS_ORDERS = tuple(RDPAccountant.DEFAULT_ALPHAS)
# Integer orders have a closed form and cost a few milliseconds instead of ~0.2 s. An RDP
# bound over fewer orders is larger, so the domain it sizes is at least as safe; the noise
# search uses it, and the final epsilon is always computed with Opacus' own orders.
INTEGER_ORDERS = tuple(order for order in OPACUS_ORDERS if float(order).is_integer())


@functools.lru_cache(maxsize=512)
def _single_step_rdp(
    sample_rate: float, noise_multiplier: float, orders: tuple[float, ...]
) -> np.ndarray:
    return np.asarray(
        rdp_analysis.compute_rdp(
            q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(orders)
        )
    )


def _rdp_epsilon(
    single_step: np.ndarray, orders: tuple[float, ...], steps: int, delta: float
) -> float:
    eps, _ = rdp_analysis.get_privacy_spent(
        orders=list(orders), rdp=single_step * steps, delta=delta
    )
    return float(eps)


def _prv_epsilon(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
    eps_error: float, orders: tuple[float, ...],
) -> float:
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    delta_error = delta / 1000
    # compute_safe_domain_size (Gopi et al., remark 5.6), with the RDP curve cached.
    single_step = _single_step_rdp(float(sample_rate), float(noise_multiplier), orders)
    bound = max(
        _rdp_epsilon(single_step, orders, steps, delta_error / 4),
        _rdp_epsilon(single_step, orders, 1, delta_error / (8 * steps)),
    )
    half_width = max(bound, eps_error) + 3
    mesh_size = eps_error / np.sqrt(steps * np.log(12 / delta_error) / 2)
    domain = Domain.create_aligned(-half_width, half_width, mesh_size)
    prv = PoissonSubsampledGaussianPRV(sample_rate, noise_multiplier)
    truncated = TruncatedPrivacyRandomVariable(prv, domain.t_min, domain.t_max)
    composed = compose_heterogeneous(
        dprvs=[discretize(truncated, domain)], num_self_compositions=[steps]
    )
    _, _, eps_upper = composed.compute_epsilon(delta, delta_error, eps_error)
    return float(eps_upper)


def epsilon_for(
    *, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
    eps_error: float = EPS_ERROR,
) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps, by Opacus' PRV accountant.

    Same numbers as ``PRVAccountant`` with history ``[(noise_multiplier, sample_rate,
    steps)]`` and ``get_epsilon(delta, eps_error=eps_error)`` (the upper bound).
    """
    return _prv_epsilon(
        noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps,
        delta=delta, eps_error=eps_error, orders=OPACUS_ORDERS,
    )


# The noise search first works on a 10x coarser PRV grid (about 10x cheaper); a coarse upper
# bound sits about (COARSE_EPS_ERROR - EPS_ERROR) above the fine one, so it is shifted by that.
COARSE_EPS_ERROR = 0.1


@functools.lru_cache(maxsize=128)
def noise_multiplier_for(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int
) -> float:
    """The smallest noise (to the search tolerance) that keeps ``steps`` steps within
    ``target_epsilon`` by :func:`epsilon_for`: epsilon lands in ``[target - 0.01, target]``
    whenever that much noise is above the 0.1 floor."""
    if target_epsilon <= 0:
        raise PrivacyBudgetError("target epsilon must be positive")
    aim = target_epsilon - EPSILON_SEARCH_TOLERANCE / 2

    def coarse(sigma: float) -> float:
        _check_calibration_stop()
        upper = _prv_epsilon(
            noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta,
            eps_error=COARSE_EPS_ERROR, orders=INTEGER_ORDERS,
        )
        return upper - (COARSE_EPS_ERROR - EPS_ERROR)

    def exact(sigma: float) -> float:
        _check_calibration_stop()
        return epsilon_for(
            noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta
        )

    high = 1.0
    while coarse(high) > aim:
        high *= 2
        if high > 1e4:
            raise PrivacyBudgetError(
                f"epsilon {target_epsilon} is out of reach for this data size and schedule"
            )
    low = high / 2
    while coarse(low) <= aim and low > MIN_NOISE_MULTIPLIER:
        # A generous budget needs little noise; the floor keeps the PRV discretisation
        # domain (which grows as the noise shrinks) small.
        high, low = low, max(low / 2, MIN_NOISE_MULTIPLIER)
    if coarse(low) <= aim:
        sigma = low
    else:
        sigma = brentq(lambda s: coarse(s) - aim, low, high, xtol=1e-3, rtol=1e-4)
    # Refine on the exact accountant. Epsilon falls roughly like 1 / sigma, so scaling
    # sigma by eps / aim is a Newton-like step; keep the best sigma within budget.
    best = None
    for _ in range(6):
        spent = exact(sigma)
        if spent <= target_epsilon:
            best = sigma if best is None else min(best, sigma)
            if target_epsilon - spent <= EPSILON_SEARCH_TOLERANCE or sigma <= MIN_NOISE_MULTIPLIER:
                return float(best)
        sigma = max(sigma * spent / aim, MIN_NOISE_MULTIPLIER)
    if best is not None:
        return float(best)
    while exact(sigma) > target_epsilon:  # never reached in practice; a safe fallback
        sigma *= 1.01
    return float(sigma)


@dataclass
class PrivateTraining:
    """A model, optimiser and loader wrapped for DP-SGD, with what accounting needs."""

    engine: PrivacyEngine
    module: nn.Module  # Opacus' GradSampleModule; unwrap with ``unwrap``
    optimizer: optim.Optimizer
    loader: DataLoader
    target_epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    max_grad_norm: float
    planned_steps: int
    clipping: dict = field(default_factory=dict)  # fast path or fallback, and why

    @property
    def steps(self) -> int:
        """Optimiser steps taken so far, as the engine's accountant recorded them."""
        return int(sum(count for _, _, count in self.engine.accountant.history))

    def epsilon(self) -> float:
        """Epsilon spent by the steps taken so far."""
        return epsilon_for(
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps,
            delta=self.delta,
        )

    def report(self) -> dict:
        """The privacy part of the training result (plain floats and ints)."""
        epsilon = self.epsilon()
        if epsilon > self.target_epsilon + BUDGET_TOLERANCE:
            raise PrivacyBudgetError(
                f"spent epsilon {epsilon:.4f} exceeds the target {self.target_epsilon}"
            )
        return {
            "enabled": True,
            "epsilon": epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "accountant": ACCOUNTANT,
            "target_epsilon": self.target_epsilon,
            "max_grad_norm": self.max_grad_norm,
            "poisson_sampling": True,
            "clipping": self.clipping,
        }


def disabled_report() -> dict:
    """The privacy part of the result for a run without differential privacy."""
    return {
        "enabled": False, "epsilon": None, "delta": None, "noise_multiplier": None,
        "sample_rate": None, "steps": 0, "accountant": None, "target_epsilon": None,
        "max_grad_norm": None,
    }


def prepare_module(model: nn.Module) -> nn.Module:
    """Replace layers Opacus cannot handle (e.g. BatchNorm -> GroupNorm), then validate."""
    if not ModuleValidator.is_valid(model):
        model = ModuleValidator.fix(model)
    ModuleValidator.validate(model, strict=True)
    return model


def make_private(
    *, model: nn.Module, optimizer: optim.Optimizer, loader: DataLoader,
    config: PrivacyConfig, epochs: int,
) -> PrivateTraining:
    """Wrap for DP-SGD so that ``epochs`` full epochs spend at most ``config.target_epsilon``.

    The noise is searched for the exact number of steps the Poisson loader will take
    (Opacus' ``make_private_with_epsilon`` derives the step count from ``epochs /
    sample_rate``, which floating point can round one step short). ``optimizer`` must
    belong to ``model``'s parameters; ``model`` should have been through
    :func:`prepare_module` before the optimiser was built.
    """
    if config.accountant != ACCOUNTANT:
        raise ValueError(f"only the {ACCOUNTANT!r} accountant is supported")
    n_train = len(loader.dataset)
    delta = resolve_delta(config.delta, n_train)
    sample_rate = 1 / len(loader)
    # The Poisson loader (ml_core.sampling, like Opacus') yields int(1 / sample_rate)
    # batches per epoch.
    planned_steps = epochs * int(1 / sample_rate)
    sigma = noise_multiplier_for(
        target_epsilon=float(config.target_epsilon), delta=delta,
        sample_rate=sample_rate, steps=planned_steps,
    )
    model.train()  # Opacus records no activations in eval mode.
    engine = PrivacyEngine(accountant=ACCOUNTANT)
    # Book-keeping clipping for Linear stacks; any other layer falls back to Opacus' hooks
    # mode (logged, and recorded in the report). Noise and accounting are Opacus'; Poisson
    # sampling is drawn in O(batch) per step (ml_core.sampling), at Opacus' rate and steps.
    module, dp_optimizer, dp_loader, clipping = fast_clipping.make_private_fast(
        engine,
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=config.max_grad_norm,
        poisson_sampling=True,
        loss_reduction="mean",  # matches BCEWithLogitsLoss(reduction="mean")
    )
    if epochs * len(dp_loader) != planned_steps:
        raise RuntimeError("the Poisson loader's length differs from the planned schedule")
    return PrivateTraining(
        engine=engine, module=module, optimizer=dp_optimizer, loader=dp_loader,
        target_epsilon=float(config.target_epsilon), delta=delta, noise_multiplier=sigma,
        sample_rate=sample_rate, max_grad_norm=float(config.max_grad_norm),
        planned_steps=planned_steps, clipping=clipping.to_dict(),
    )


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside Opacus' wrapper (whose state_dict keys carry ``_module.``)."""
    return getattr(module, "_module", module)
