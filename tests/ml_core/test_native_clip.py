"""The compiled clipped sum and noise (ml_core.native) give the Python path's numbers, bit
for bit.

Every flat form the Python path has (one layer or several; all, none or some with a bias;
a weight wider or narrower than its input; an output gradient shared by two layers, which
must not be scaled in place), a whole private step with noise, and the fallback when the
operator is switched off. Where this machine cannot compile it the tests skip saying why,
except under ``TESSERA_NATIVE_REQUIRED=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import copy
import os
import time

import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core import fast_clipping as fc
from ml_core import native


@pytest.fixture(scope="module")
def op():
    built = native.build()
    if built is None:
        reason = native.disabled_reason()
        if os.environ.get("TESSERA_NATIVE_REQUIRED") == "1":
            pytest.fail(f"the compiled clipped sum is required here: {reason}")
        pytest.skip(f"no compiled clipped sum on this machine: {reason}")
    return built


class _Shared(nn.Module):
    """Two branches whose sum feeds the last layer: autograd hands both the one output
    gradient (129 x 300, above the in-place size), which must not be scaled in place."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(12, 400)
        self.left = nn.Linear(400, 300, bias=False)
        self.right = nn.Linear(400, 300)
        self.out = nn.Linear(300, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(x))
        return self.out(self.left(h) + self.right(h))


def _mlp(widths: tuple[int, ...], biases: tuple[bool, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out, bias=biases[i]))
        if i < len(widths) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


MODELS = {
    "one layer with bias": lambda: _mlp((12, 3), (True,)),
    "one layer without bias": lambda: _mlp((12, 3), (False,)),
    "all biases, narrow then wide": lambda: _mlp((12, 64, 40, 3), (True, True, True)),
    "no bias": lambda: _mlp((12, 64, 3), (False, False)),
    "some biases": lambda: _mlp((12, 64, 40, 3), (True, False, True)),
    "one gradient for two layers": _Shared,
}


def _sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, compiled: bool,
          reduction: str, max_grad_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    wrapped = fc.BookkeepingModule(copy.deepcopy(model).train(), loss_reduction=reduction)
    wrapped._native = compiled
    loss = nn.functional.cross_entropy(wrapped(x), y, reduction=reduction)
    loss.backward()
    sums, norms = wrapped.clipped_sum(max_grad_norm=max_grad_norm)
    names = {id(p): name for name, p in wrapped._module.named_parameters()}
    ordered = sorted(sums.items(), key=lambda item: names[id(item[0])])
    return [grad for _, grad in ordered], norms


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("max_grad_norm", [1e-3, 0.5, 1e3], ids=["clipped", "some", "none"])
@pytest.mark.parametrize("name", list(MODELS))
def test_the_compiled_sum_is_the_python_sum_bit_for_bit(op, name, reduction, max_grad_norm):
    torch.manual_seed(3)
    model = MODELS[name]()
    x, y = torch.randn(129, 12) * 3, torch.randint(0, 3, (129,))
    compiled, compiled_norms = _sums(model, x, y, compiled=True, reduction=reduction,
                                     max_grad_norm=max_grad_norm)
    python, python_norms = _sums(model, x, y, compiled=False, reduction=reduction,
                                 max_grad_norm=max_grad_norm)
    assert torch.equal(compiled_norms, python_norms)
    assert len(compiled) == len(python) == sum(p.requires_grad for p in model.parameters())
    for got, expected in zip(compiled, python, strict=True):
        assert got.shape == expected.shape and got.is_contiguous()
        assert torch.equal(got, expected)


def test_the_compiled_sum_runs_in_the_step(op, monkeypatch):
    noise_op = native.noisy_mean()
    calls = []

    def counted(name, function):  # noqa: ANN001, ANN202
        def call(*args):  # noqa: ANN002, ANN202
            calls.append((name, len(args[0])))
            return function(*args)
        return call

    monkeypatch.setitem(native._state, "op", counted("sums", op))
    monkeypatch.setitem(native._state, "noise", counted("noise", noise_op))
    grads = _private_steps(compiled=True)
    # three layers' sums, then noise for five parameters (one layer has no bias), per step
    assert calls == [("sums", 3), ("noise", 5)] * 3
    assert grads == _private_steps(compiled=False)


def _private_steps(*, compiled: bool) -> list[list[float]]:
    """Three private SGD steps with a seeded noise generator; the parameters after each."""
    torch.manual_seed(0)
    model = _mlp((12, 64, 40, 3), (True, False, True))
    x, y = torch.randn(96, 12), torch.randint(0, 3, (96,))
    module, optimizer, _, decision = fc.make_private_fast(
        PrivacyEngine(), module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=32), noise_multiplier=1.1,
        max_grad_norm=0.7, noise_generator=torch.Generator().manual_seed(7))
    assert decision.fast_path
    module._native = compiled
    after = []
    for start in (0, 32, 64):
        optimizer.zero_grad(set_to_none=True)
        batch = slice(start, start + 32)
        nn.functional.cross_entropy(module(x[batch]), y[batch]).backward()
        optimizer.step()
        after.append(torch.cat([p.detach().flatten() for p in model.parameters()]).tolist())
    return after


def test_switched_off_the_python_path_runs(monkeypatch):
    monkeypatch.setenv("TESSERA_NATIVE", "0")
    monkeypatch.setitem(native._state, "op", None)
    monkeypatch.setitem(native._state, "noise", None)
    assert native.flat_clipped_sums() is None and native.noisy_mean() is None
    assert native.disabled_reason() == "TESSERA_NATIVE=0"
    grads = _private_steps(compiled=True)  # asks for the operator, gets None: Python path
    monkeypatch.delenv("TESSERA_NATIVE")
    assert grads == _private_steps(compiled=False)



def test_a_build_killed_half_way_does_not_hang_the_next(tmp_path):
    # PyTorch's builder waits for another build's lock file without end: one left by a
    # build that died (older than STALE_LOCK_SECONDS) is removed, a fresh one is not.
    lock = tmp_path / "lock"
    assert not native.clear_stale_lock(tmp_path)
    lock.write_text("")
    assert not native.clear_stale_lock(tmp_path) and lock.exists()
    old = time.time() - native.STALE_LOCK_SECONDS - 60
    os.utime(lock, (old, old))
    assert native.clear_stale_lock(tmp_path) and not lock.exists()
