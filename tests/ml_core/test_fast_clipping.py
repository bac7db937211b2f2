"""The book-keeping DP-SGD path against Opacus: same clipped sums, same noise, same epsilon.

References are independent of the fast path: a plain per-sample loop (one backward per
sample) and Opacus' own per-sample gradients (GradSampleModule), clipped one by one with
Opacus' formula; Opacus' accountants; a fixed-seed statistical check of the noise.
"""

from __future__ import annotations

import copy
import logging
import warnings

import dp_accounting
import pytest
import torch
from opacus import PrivacyEngine
from opacus.accountants import PRVAccountant
from opacus.data_loader import DPDataLoader
from opacus.grad_sample import GradSampleModule
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_core import fast_clipping as fc
from ml_core.models import TabularMLP
from ml_core.sampling import PoissonBatchSampler

pytestmark = pytest.mark.filterwarnings(
    "ignore:Secure RNG turned off", "ignore:Full backward hook is firing",
    "ignore:Optimal order is the largest alpha",
)
TOL = 1e-5


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)
    )


class MixedModel(nn.Module):
    """Sequence inputs (B, T, 8): 3-D Linear layers on both norm strategies (Gram form and
    per-sample gradients), a frozen layer, a layer without bias, one Linear used twice,
    parameter-free layers, mean pooling, a 2-D head."""

    def __init__(self) -> None:
        super().__init__()
        self.token = nn.Linear(8, 32)  # T (in + out) = 240 <= 256: Gram form
        self.frozen = nn.Linear(32, 32)
        self.frozen.requires_grad_(False)
        self.narrow = nn.Linear(32, 4, bias=False)  # 216 > 128: per-sample gradients
        self.shared = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4, elementwise_affine=False)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.token(x))
        h = torch.relu(self.narrow(self.frozen(h)))
        h = self.shared(torch.tanh(self.shared(h)))
        return self.head(self.norm(h).mean(dim=1)).squeeze(-1)


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits.reshape(-1), targets)


def batch(n: int, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # Rows on very different scales, so some samples are clipped and some are not.
    scale = torch.exp(2 * torch.rand((n,) + (1,) * len(shape), generator=gen) - 1)
    x = torch.randn((n, *shape), generator=gen) * scale
    return x, torch.randint(0, 2, (n,), generator=gen).float()


def per_sample_loop(model, x, y, max_grad_norm):
    """The definition: one backward per sample, Opacus' clip factor, summed."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    grads = []
    for i in range(len(x)):
        model.zero_grad(set_to_none=True)
        bce(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append({name: p.grad.detach().clone() for name, p in named})
    sums = {name: torch.zeros_like(p) for name, p in named}
    norms = []
    for grad in grads:
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grad.values()))
        norms.append(float(norm))
        factor = min(1.0, float(max_grad_norm / (norm + fc.CLIP_EPSILON)))
        for name, g in grad.items():
            sums[name] += factor * g
    return sums, norms


def median_norm(model, x, y) -> float:
    """Median per-sample gradient norm (Opacus' per-sample gradients), a clipping bound
    that clips about half of the samples."""
    module = GradSampleModule(copy.deepcopy(model))
    bce(module(x), y).backward()
    per_sample = [p.grad_sample.reshape(len(x), -1) for p in module.parameters()
                  if p.requires_grad]
    return float(torch.cat(per_sample, dim=1).norm(dim=1).median())


def loader_for(n: int, batch_size: int, shape=(64,)) -> DataLoader:
    gen = torch.Generator().manual_seed(5)
    data = TensorDataset(torch.randn((n, *shape), generator=gen),
                         torch.randint(0, 2, (n,), generator=gen).float())
    return DataLoader(data, batch_size=batch_size)


def test_mlp_clipped_sum_matches_opacus_per_sample_reference():
    torch.manual_seed(0)
    model = mlp()
    x, y = batch(512, (64,), seed=1)
    clip = median_norm(model, x, y)
    got = fc.fast_clipped_sum(model=model, loss_fn=bce, inputs=x, targets=y, max_grad_norm=clip)
    ref = fc.reference_clipped_sum(
        model=model, loss_fn=bce, inputs=x, targets=y, max_grad_norm=clip
    )
    assert set(got) == {name for name, _ in model.named_parameters()}
    assert fc.max_relative_error(got, ref) <= TOL


def test_opacus_reference_is_the_per_sample_definition():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))
    x, y = batch(24, (64,), seed=2)
    clip = median_norm(model, x, y)
    loop, norms = per_sample_loop(copy.deepcopy(model), x, y, clip)
    assert min(norms) < clip < max(norms)  # both clipped and unclipped samples
    for result in (
        fc.reference_clipped_sum(model=model, loss_fn=bce, inputs=x, targets=y,
                                 max_grad_norm=clip),
        fc.fast_clipped_sum(model=model, loss_fn=bce, inputs=x, targets=y, max_grad_norm=clip),
    ):
        assert fc.max_relative_error(result, loop) <= TOL


def test_mixed_sequence_model_matches_per_sample_loop():
    torch.manual_seed(2)
    model = MixedModel()
    x, y = batch(40, (6, 8), seed=3)
    clip = median_norm(model, x, y)
    loop, norms = per_sample_loop(copy.deepcopy(model), x, y, clip)
    assert min(norms) < clip < max(norms)
    got = fc.fast_clipped_sum(model=model, loss_fn=bce, inputs=x, targets=y, max_grad_norm=clip)
    assert "frozen.weight" not in got and "narrow.bias" not in got
    assert fc.max_relative_error(got, loop) <= TOL


def test_sum_reduced_loss_matches_opacus_sum_semantics():
    torch.manual_seed(3)
    model = mlp()
    x, y = batch(64, (64,), seed=4)

    def bce_sum(logits, targets):
        return nn.functional.binary_cross_entropy_with_logits(
            logits.reshape(-1), targets, reduction="sum"
        )

    kwargs = dict(model=model, loss_fn=bce_sum, inputs=x, targets=y, max_grad_norm=0.5,
                  loss_reduction="sum")
    got = fc.fast_clipped_sum(**kwargs)
    assert fc.max_relative_error(got, fc.reference_clipped_sum(**kwargs)) <= TOL


def _opacus_and_fast(model_factory, *, noise, clip, seed=11, n=640, batch_size=64, shape=(64,)):
    torch.manual_seed(seed)
    base = model_factory()
    results = {}
    for name in ("opacus", "fast"):
        model = copy.deepcopy(base)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        engine = PrivacyEngine(accountant="prv")
        kwargs = dict(module=model, optimizer=optimizer,
                      data_loader=loader_for(n, batch_size, shape), noise_multiplier=noise,
                      max_grad_norm=clip, poisson_sampling=True, loss_reduction="mean",
                      noise_generator=torch.Generator().manual_seed(seed))
        if name == "opacus":
            module, dp_optimizer, loader = engine.make_private(**kwargs)
            decision = None
        else:
            module, dp_optimizer, loader, decision = fc.make_private_fast(engine, **kwargs)
        results[name] = (module, dp_optimizer, loader, engine, decision)
    return results


def test_full_step_equals_opacus_with_the_same_noise_generator():
    runs = _opacus_and_fast(mlp, noise=0.7, clip=0.3)
    x, y = batch(70, (64,), seed=6)
    grads = {}
    for name, (module, optimizer, _, _, _) in runs.items():
        optimizer.zero_grad(set_to_none=True)
        bce(module(x), y).backward()
        optimizer.step()
        grads[name] = {n: p.grad.clone() for n, p in fc_unwrap(module).named_parameters()}
        grads[name + "_params"] = {n: p.detach().clone()
                                   for n, p in fc_unwrap(module).named_parameters()}
    assert runs["fast"][4].fast_path
    assert fc.max_relative_error(grads["fast"], grads["opacus"]) <= TOL
    assert fc.max_relative_error(grads["fast_params"], grads["opacus_params"]) <= TOL


def fc_unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "_module", module)


def test_noise_has_opacus_std_on_a_zero_gradient():
    noise, clip, n, batch_size = 1.5, 2.0, 1000, 100
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    module, dp_optimizer, _, decision = fc.make_private_fast(
        PrivacyEngine(), module=model, optimizer=optimizer,
        data_loader=loader_for(n, batch_size), noise_multiplier=noise, max_grad_norm=clip,
        noise_generator=torch.Generator().manual_seed(123),
    )
    assert decision.fast_path and dp_optimizer.expected_batch_size == batch_size
    x, _ = batch(batch_size, (64,), seed=7)
    dp_optimizer.zero_grad()
    (module(x).sum() * 0.0).backward()  # an expanded, all-zero output gradient
    dp_optimizer.step()
    values = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
    expected_std = noise * clip / batch_size
    count = values.numel()
    assert count > 16_000
    # std of a sample std is about std / sqrt(2 count) (0.6% here): 4% is generous.
    assert float(values.std()) == pytest.approx(expected_std, rel=0.04)
    assert abs(float(values.mean())) < 5 * expected_std / count**0.5


def test_epsilon_equals_opacus_accountant_for_the_same_steps():
    runs = _opacus_and_fast(mlp, noise=1.1, clip=1.0, n=600, batch_size=50)
    steps = 7
    # The same Poisson sampling, drawn in O(batch) by the product's sampler.
    assert isinstance(runs["opacus"][2].batch_sampler, UniformWithReplacementSampler)
    assert isinstance(runs["fast"][2].batch_sampler, PoissonBatchSampler)
    assert len(runs["fast"][2]) == len(runs["opacus"][2])
    for module, optimizer, loader, _, _ in runs.values():
        assert isinstance(loader, DPDataLoader)
        for i, (x, y) in enumerate(loader):
            if i == steps:
                break
            optimizer.zero_grad(set_to_none=True)
            bce(module(x), y).backward()
            optimizer.step()
    sample_rate = 1 / len(runs["fast"][2])
    assert sample_rate == pytest.approx(50 / 600)
    fast_engine, opacus_engine = runs["fast"][3], runs["opacus"][3]
    assert fast_engine.accountant.history == [(1.1, sample_rate, steps)]
    assert fast_engine.accountant.history == opacus_engine.accountant.history
    delta = 1e-5
    fresh = PRVAccountant()
    fresh.history = [(1.1, sample_rate, steps)]
    epsilon = fast_engine.get_epsilon(delta)
    assert epsilon == opacus_engine.get_epsilon(delta) == fresh.get_epsilon(delta)
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(1.1)),
        steps,
    )
    pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    pld.compose(event)
    assert epsilon == pytest.approx(pld.get_epsilon(delta), rel=0.02)


def test_noise_multiplier_for_a_target_epsilon_is_opacus():
    torch.manual_seed(4)
    kwargs = dict(target_epsilon=2.0, target_delta=1e-5, epochs=3, max_grad_norm=1.0)
    model = mlp()
    _, optimizer, _, decision = fc.make_private_fast_with_epsilon(
        PrivacyEngine(accountant="rdp"), module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=loader_for(400, 40), **kwargs,
    )
    model = mlp()
    _, reference, _ = PrivacyEngine(accountant="rdp").make_private_with_epsilon(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=loader_for(400, 40), **kwargs,
    )
    assert decision.fast_path
    assert optimizer.noise_multiplier == reference.noise_multiplier


def test_an_empty_poisson_batch_is_pure_noise_and_is_accounted():
    runs = _opacus_and_fast(mlp, noise=1.0, clip=1.0)
    module, optimizer, _, engine, _ = runs["fast"]
    x, y = batch(0, (64,), seed=8)
    optimizer.zero_grad(set_to_none=True)
    bce(module(x), y).backward()
    optimizer.step()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in optimizer.params)
    assert engine.accountant.history[0][2] == 1


def test_two_backward_passes_before_a_step_are_refused():
    module, optimizer, _, _, _ = _opacus_and_fast(mlp, noise=1.0, clip=1.0)["fast"]
    x, y = batch(8, (64,), seed=9)
    optimizer.zero_grad()
    bce(module(x), y).backward()
    bce(module(x), y).backward()
    with pytest.raises(RuntimeError, match="more than one backward"):
        optimizer.step()


def test_eval_and_no_grad_forwards_record_nothing_and_cleanup_restores_layers():
    model = TabularMLP(5, (8,))
    wrapped = fc.BookkeepingModule(model)
    x = torch.randn(4, 5)
    with torch.no_grad():
        wrapped(x)
    wrapped.eval()
    wrapped(x).sum().backward()  # plain autograd in eval mode
    assert all(not state.records for state in wrapped.layer_states)
    wrapped.train()
    wrapped(x).sum().backward()
    assert all(len(state.records) == 1 for state in wrapped.layer_states)
    assert wrapped.architecture() == model.architecture()  # attributes pass through
    assert all(key.startswith("_module.") for key in wrapped.state_dict())
    wrapped.cleanup()
    assert all("forward" not in layer.__dict__ for layer in model.modules())


def test_private_training_through_the_poisson_loader_learns():
    torch.manual_seed(0)
    n = 2000
    x = torch.randn(n, 6)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).float()
    model = TabularMLP(6, (16,))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    module, dp_optimizer, loader, decision = fc.make_private_fast(
        PrivacyEngine(), module=model, optimizer=optimizer,
        data_loader=DataLoader(TensorDataset(x, y), batch_size=100),
        noise_multiplier=0.8, max_grad_norm=1.0,
    )
    assert decision.fast_path and decision.layers == ("layers.0", "layers.2")
    for _ in range(3):
        for features, labels in loader:
            dp_optimizer.zero_grad(set_to_none=True)
            bce(module(features), labels).backward()
            dp_optimizer.step()
    with torch.no_grad():
        accuracy = float(((model(x) > 0).float() == y).float().mean())
    assert accuracy > 0.85


class WithEmbedding(nn.Module):
    # Scaling by the batch's counts couples the samples: no book-keeping path.
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4, scale_grad_by_freq=True)
        self.head = nn.Linear(4, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(tokens).mean(dim=1)).squeeze(-1)


class WithConv(nn.Module):
    # Circular padding is not a window of zeros: no book-keeping path.
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, kernel_size=3, padding=1, padding_mode="circular")
        self.head = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=2)).squeeze(-1)


@pytest.mark.parametrize(
    ("factory", "inputs", "layer"),
    [
        (WithEmbedding, lambda n: torch.randint(0, 10, (n, 5)), "Embedding"),
        (WithConv, lambda n: torch.randn(n, 2, 7), "Conv1d"),
    ],
)
def test_unsupported_layers_fall_back_to_opacus_hooks_and_say_so(factory, inputs, layer, caplog):
    torch.manual_seed(0)
    model = factory()
    before = copy.deepcopy(model.state_dict())
    data = TensorDataset(inputs(200), torch.randint(0, 2, (200,)).float())
    engine = PrivacyEngine()
    with caplog.at_level(logging.WARNING, logger="ml_core.fast_clipping"):
        module, optimizer, loader, decision = fc.make_private_fast(
            engine, module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
            data_loader=DataLoader(data, batch_size=20), noise_multiplier=0.5,
            max_grad_norm=1.0,
        )
    assert not decision.fast_path and layer in decision.reason
    assert decision.to_dict()["fast_path"] is False
    assert layer in caplog.text and "fast path off" in caplog.text
    assert isinstance(module, GradSampleModule)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (x, y) in enumerate(loader):
            if i == 3:
                break
            optimizer.zero_grad(set_to_none=True)
            bce(module(x), y).backward()
            optimizer.step()
    assert engine.accountant.history[0][2] == 3
    after = model.state_dict()
    assert any(not torch.equal(before[key], after[key]) for key in before)


def test_support_check_names_the_layers():
    decision = fc.fast_path_support(MixedModel())
    assert decision.fast_path
    assert decision.layers == ("token", "narrow", "shared", "head")

    class Custom(nn.Linear):
        def forward(self, x):  # noqa: ANN001
            return super().forward(x) * 2

    assert not fc.fast_path_support(nn.Sequential(Custom(3, 3))).fast_path
    frozen = nn.Sequential(nn.Embedding(4, 3), nn.Linear(3, 1))
    frozen[0].requires_grad_(False)
    assert fc.fast_path_support(frozen).fast_path  # a frozen embedding needs no clipping


class ParallelBranches(nn.Module):
    """Two Linear layers whose outputs are added: autograd hands both the *same* output
    gradient tensor, so neither may be scaled in place."""

    def __init__(self, width: int = 6, hidden: int = 5) -> None:
        super().__init__()
        self.left = nn.Linear(width, hidden)
        self.right = nn.Linear(width, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.left(x) + self.right(x))).squeeze(-1)


@pytest.mark.parametrize(("rows", "width"), [(30, 6), (520, 64)], ids=["small", "in-place size"])
def test_layers_sharing_one_output_gradient_match_per_sample_loop(rows, width):
    # Small gradients are always scaled into new tensors; from IN_PLACE_MIN_ELEMENTS on,
    # in place unless another record shares the memory (as here).
    assert (rows * width >= fc.IN_PLACE_MIN_ELEMENTS) == (width == 64)
    torch.manual_seed(5)
    model = ParallelBranches(width, width)
    x, y = batch(rows, (width,), seed=10)
    clip = median_norm(model, x, y)
    loop, _ = per_sample_loop(copy.deepcopy(model), x, y, clip)
    got = fc.fast_clipped_sum(model=model, loss_fn=bce, inputs=x, targets=y, max_grad_norm=clip)
    assert fc.max_relative_error(got, loop) <= TOL


def test_linear_layers_with_and_without_bias_match_opacus():
    # The 2-D path stacks every layer's norms: layers with a bias add ||g||^2, the
    # bias-free skip layer does not.
    torch.manual_seed(3)
    model = TabularMLP(9, (7, 5), linear_skip=True)
    x, y = batch(40, (9,), seed=12)
    clip = median_norm(model, x, y)
    got = fc.fast_clipped_sum(model=model, loss_fn=bce, inputs=x, targets=y, max_grad_norm=clip)
    ref = fc.reference_clipped_sum(model=model, loss_fn=bce, inputs=x, targets=y,
                                   max_grad_norm=clip)
    assert fc.max_relative_error(got, ref) <= TOL
