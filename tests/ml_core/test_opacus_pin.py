"""The Opacus pin: the fast path relies on Opacus' internals, so an Opacus release it was
not verified against must fail here, loudly, before it trains anything."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest
import torch
from opacus.data_loader import wrap_collate_with_empty
from opacus.optimizers import DPOptimizer
from opacus.version import __version__ as installed
from packaging.requirements import Requirement
from packaging.version import Version
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core import fast_clipping
from ml_core.fast_clipping import SUPPORTED_OPACUS, make_private_fast, opacus_supported

ROOT = Path(__file__).resolve().parents[2]


def _pinned() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (opacus,) = [Requirement(line) for line in project["dependencies"]
                 if Requirement(line).name == "opacus"]
    return opacus


def test_installed_opacus_is_a_verified_release():
    assert opacus_supported(), (
        f"Opacus {installed} is installed, but ml_core.fast_clipping was verified against "
        f"{SUPPORTED_OPACUS} only: check its internals (DPOptimizer.clip_and_accumulate, "
        "pre_step, summed_grad; data_loader.wrap_collate_with_empty) and the fast-clipping "
        "tests, then extend SUPPORTED_OPACUS and the pin in pyproject.toml")
    assert Version(installed) in _pinned().specifier


def test_the_pin_covers_exactly_the_verified_releases():
    specifier = _pinned().specifier
    assert specifier, "pyproject.toml must bound opacus' version"
    for major, minor in SUPPORTED_OPACUS:
        assert Version(f"{major}.{minor}.0") in specifier
        assert Version(f"{major}.{minor}.9") in specifier
    # The next minor and the previous one are out of the pin, as they are of the fast path.
    newest = max(SUPPORTED_OPACUS)
    oldest = min(SUPPORTED_OPACUS)
    assert Version(f"{newest[0]}.{newest[1] + 1}.0") not in specifier
    assert Version(f"{oldest[0]}.{oldest[1] - 1}.0") not in specifier


@pytest.mark.parametrize("version", ["1.7.0", "1.5.2", "2.0.0", "garbage"])
def test_an_unknown_release_is_refused(version):
    assert not opacus_supported(version)


def test_an_unverified_release_falls_back_to_opacus_own_hooks(monkeypatch):
    from opacus import PrivacyEngine

    monkeypatch.setattr(fast_clipping, "OPACUS_VERSION", "1.7.0")
    model = nn.Sequential(nn.Linear(3, 2))
    loader = DataLoader(TensorDataset(torch.zeros(20, 3), torch.zeros(20)), batch_size=5)
    module, _, _, decision = make_private_fast(
        PrivacyEngine(), module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0)
    assert not decision.fast_path and "1.7.0" in decision.reason
    assert not isinstance(module, fast_clipping.BookkeepingModule)


def test_the_internals_the_fast_path_uses_are_there():
    for name in ("clip_and_accumulate", "pre_step", "add_noise", "scale_grad",
                 "_check_skip_next_step", "attach_step_hook", "accumulated_iterations"):
        assert hasattr(DPOptimizer, name), name
    parameters = inspect.signature(wrap_collate_with_empty).parameters
    assert {"collate_fn", "sample_empty_shapes", "dtypes", "batch_first",
            "rand_on_empty"} <= set(parameters)
