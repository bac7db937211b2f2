"""Book-keeping DP-SGD: Opacus' clipping semantics at close to the cost of a plain step.

Opacus' default ("hooks") mode materialises one gradient per sample and parameter, which
costs tens of times a non-private step on a small MLP. For a ``Linear`` layer the
per-sample gradient of sample ``i`` is ``g_i^T a_i`` (output gradients times inputs), so
its norm follows from ``a`` and ``g`` alone, and the *clipped sum* over samples is one
matmul ``(c * g)^T a`` (Bu et al., "Differentially private optimization on large model at
small cost", 2023). This module:

* replaces each trainable ``nn.Linear``'s forward (on the instance, reversibly) by an
  autograd function whose backward computes only the input gradient and records ``(a, g)``;
  autograd therefore never computes the unclipped weight gradient it would throw away (a
  batch of one sample runs the layer's own forward: its gradient is the sample's);
* computes per-sample norms with the ghost-norm identity (``||g_i||^2 ||a_i||^2`` for 2-D
  inputs, the Gram form ``<a_i a_i^T, g_i g_i^T>`` for sequences, or per-sample gradients
  when those are cheaper), clips with Opacus' exact formula and sums with one matmul;
* leaves everything else to Opacus: :class:`BookkeepingDPOptimizer` *is* a
  :class:`opacus.optimizers.DPOptimizer`, so the noise (``noise_multiplier *
  max_grad_norm``), the division by the expected batch size and the accountant hook are
  Opacus' own code. The Poisson loader is Opacus' ``DPDataLoader`` drawing its batches in
  O(batch) per step (:mod:`ml_core.sampling`; same sample rate, steps and empty batches).
  The same noise multiplier, sample rate and steps give the same epsilon.

The same book-keeping covers ``nn.Embedding`` (a row lookup: each sample's gradient is
its output gradients added to the rows it looked up; the norm groups a sample's repeated
rows), ``nn.Conv1d`` (a Linear over the unfolded input windows, one "step" per output
position) and Opacus' recurrent layers (DPGRU, DPLSTM, DPRNN: their cells' Linear layers,
used once per time step, are a longer "sequence"; DPGRU's input projection is taken once
over the whole sequence, and its recurrent Linear is recorded once per layer through zero
"taps" on one leaf). A table of few rows clips from its per-sample gradients when those
cost less than the Gram form. Models with any trainable parameter outside these plain layers
fall back to Opacus' hooks mode; :class:`FastPathDecision` says which path was taken and why.

The optimiser's step fuses Opacus' clip_and_accumulate, add_noise and scale_grad with the
same arithmetic in the same order (the same Gaussian draws, the same bits), without
Opacus' per-parameter bookkeeping; on a CPU with one thread a small model's step is mostly
such fixed Python cost, so it is kept to a few tensor operations per layer and parameter:
2-D Linear layers' norms are squared and combined in one stacked tensor, the noise is
added and scaled by one ``torch._foreach_*`` call each, and a batch of one sample (whose
gradient is the batch's) is clipped as a whole with one ``torch._foreach_norm``.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.data_loader import DPDataLoader
from opacus.grad_sample import GradSampleModule
from opacus.layers import DPGRU
from opacus.layers.param_rename import RenameParamsMixin
from opacus.optimizers import DPOptimizer
from opacus.version import __version__ as OPACUS_VERSION
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence
from torch.utils.data import DataLoader

from ml_core import native
from ml_core.sampling import PoissonLoader

logger = logging.getLogger(__name__)

# The Opacus releases whose internals this module relies on (DPOptimizer's
# clip_and_accumulate / pre_step / summed_grad protocol and its noise and scaling steps;
# DPDataLoader's empty-batch collate, reused by ml_core.sampling). Same range as the pin in
# pyproject.toml; tests/ml_core/test_opacus_pin.py fails on any other installed version, and
# an unverified version gets Opacus' own hooks and loader instead of the fast path.
SUPPORTED_OPACUS = ((1, 6),)  # (major, minor) releases, any patch


def opacus_supported(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed Opacus) is one the fast path was
    verified against."""
    version = OPACUS_VERSION if version is None else version
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) in SUPPORTED_OPACUS


# Opacus' clip factor: (max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
# (opacus/optimizers/optimizer.py, DPOptimizer.clip_and_accumulate).
CLIP_EPSILON = 1e-6


@dataclass(frozen=True)
class FastPathDecision:
    """Which private path a model gets, and why (for the run's log)."""

    fast_path: bool
    reason: str
    layers: tuple[str, ...] = ()  # the Linear layers clipped on the fast path

    def to_dict(self) -> dict:
        return {"fast_path": self.fast_path, "reason": self.reason, "layers": list(self.layers)}


def _is_plain_linear(module: nn.Module) -> bool:
    # A subclass that overrides forward computes something we cannot see from (a, g).
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def _is_plain_embedding(module: nn.Module) -> bool:
    # A row lookup: its per-sample gradient is the output gradients scattered to the looked-up
    # rows. max_norm renormalises rows in the forward pass and scale_grad_by_freq rescales by
    # the batch's counts (a cross-sample dependence): both stay on Opacus' path. So does a
    # padding_idx: autograd gives its row no gradient, Opacus' per-sample rule does (1.6),
    # and the fast path must clip exactly what Opacus clips.
    return (isinstance(module, nn.Embedding)
            and type(module).forward is nn.Embedding.forward
            and module.max_norm is None and not module.scale_grad_by_freq
            and not module.sparse and module.padding_idx is None)


def _is_plain_conv1d(module: nn.Module) -> bool:
    # A Conv1d is a Linear over its unfolded input windows (one "step" per output position),
    # for one group and zero padding; anything else stays on Opacus' path.
    return (isinstance(module, nn.Conv1d) and type(module).forward is nn.Conv1d.forward
            and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


def _has_fast_path(module: nn.Module) -> bool:
    return _is_plain_linear(module) or _is_plain_embedding(module) or _is_plain_conv1d(module)


def _kind(module: nn.Module) -> str:
    return "Linear" if _is_plain_linear(module) else type(module).__name__


def fast_path_support(
    module: nn.Module, *, params: Iterable[nn.Parameter] | None = None
) -> FastPathDecision:
    """Whether every trainable parameter of ``module`` (or of ``params``, a subset) can be
    clipped on the book-keeping path, i.e. is the weight or bias of a plain ``nn.Linear``
    or the weight of a plain ``nn.Embedding``."""
    wanted = None if params is None else {id(p) for p in params}
    owners = _parameter_owners(module)
    fast_layers: list[str] = []
    kinds: set[str] = set()
    for name, param in module.named_parameters():
        if not param.requires_grad or (wanted is not None and id(param) not in wanted):
            continue
        owner_name, owner = owners[id(param)]
        if not _has_fast_path(owner):
            return FastPathDecision(
                fast_path=False,
                reason=(f"{type(owner).__name__} {owner_name or '(root)'!r} (parameter {name!r}) "
                        "has no book-keeping path; using Opacus' per-sample hooks"),
            )
        if owner_name not in fast_layers:
            fast_layers.append(owner_name)
            kinds.add(_kind(owner))
    if not fast_layers:
        return FastPathDecision(
            fast_path=False, reason="no trainable Linear layer; using Opacus' hooks"
        )
    return FastPathDecision(
        fast_path=True,
        reason=(f"book-keeping clipping over {len(fast_layers)} "
                f"{' and '.join(sorted(kinds))} layers"),
        layers=tuple(fast_layers),
    )


def _parameter_owners(module: nn.Module) -> dict[int, tuple[str, nn.Module]]:
    """id(parameter) -> (name, module) of the module whose forward uses it.

    Opacus' recurrent layers (DPRNN, DPGRU, DPLSTM) register each cell's Linear weights a
    second time under nn.RNN's names (``weight_ih_l0``...; RenameParamsMixin) and never use
    those aliases themselves: the owner is the cell's Linear (``l0.ih``), whose forward the
    recurrence calls once per time step, a use the book-keeping path records like any other.
    """
    owners: dict[int, tuple[str, nn.Module]] = {}
    for name, sub in module.named_modules():
        aliases = set(getattr(sub, "new_to_old", ())) if isinstance(sub, RenameParamsMixin) else ()
        for param_name, param in sub.named_parameters(recurse=False):
            if param_name not in aliases:
                owners.setdefault(id(param), (name, sub))
    return owners


class _Record(NamedTuple):
    forward_id: int
    activations: torch.Tensor  # (B, in) or (B, T, in), batch first
    backprops: torch.Tensor  # (B, out) or (B, T, out): d loss / d output, as the loss reduced it
    # A 2-D Linear's row norms of each, taken while the rows are still in the CPU's cache
    # (the input in the forward pass, the output gradient in the backward pass): the ghost
    # norm then costs no second pass over memory. Squared in the step, all layers at once.
    activation_norm: torch.Tensor | None = None
    backprop_norm: torch.Tensor | None = None


class _LinearCapture(torch.autograd.Function):
    """``F.linear`` whose backward returns only the input gradient and records ``(a, g)``."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer_state):  # noqa: ANN001 - autograd signature
        ctx.save_for_backward(x, weight)
        ctx.layer_state = layer_state
        ctx.forward_id = layer_state.count_use()
        # Only a layer's first use in a forward pass: the norms of a layer used several
        # times (a recurrence's steps) come from all its records together. (A batch of one
        # sample never gets here: see _LayerState.plain_use. A Function's forward runs
        # without autograd: no detach needed.)
        ctx.activation_norm = (
            (torch.linalg.vector_norm(x, dim=1) if x.dtype is torch.float32 else _row_norms(x))
            if layer_state.uses == 1 and x.dim() == 2 else None)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001
        x, weight = ctx.saved_tensors
        state = ctx.layer_state
        activation_norm = ctx.activation_norm
        if activation_norm is not None and state.uses == 1:
            # A 2-D layer used once (the common case): no time axis to move.
            state.records.append(_Record(
                ctx.forward_id, x.detach() if x.requires_grad else x, grad_output.detach(),
                activation_norm,
                torch.linalg.vector_norm(grad_output, dim=1)
                if grad_output.dtype is torch.float32 else _row_norms(grad_output)))
        else:
            state.record(forward_id=ctx.forward_id, activations=x, backprops=grad_output)
        grad_input = grad_output.matmul(weight) if ctx.needs_input_grad[0] else None
        # No weight or bias gradient: the optimiser builds the clipped sum from the record.
        return grad_input, None, None, None


class _EmbeddingCapture(torch.autograd.Function):
    """``F.embedding`` whose backward records ``(indices, g)`` and computes no gradient (the
    indices have none; the optimiser builds the weight's clipped sum from the record)."""

    @staticmethod
    def forward(ctx, indices, weight, layer_state):  # noqa: ANN001 - autograd signature
        ctx.layer_state = layer_state
        ctx.forward_id = layer_state.owner.forward_id
        ctx.save_for_backward(indices)
        return F.embedding(indices, weight)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001
        (indices,) = ctx.saved_tensors
        ctx.layer_state.record(forward_id=ctx.forward_id, activations=indices,
                               backprops=grad_output)
        return None, None, None


class _LayerState:
    """What one Linear or Embedding layer recorded since the optimiser's last step."""

    def __init__(self, *, owner: BookkeepingModule, layer: nn.Linear, name: str) -> None:
        self.owner = owner
        self.layer = layer
        self.name = name
        self.records: list[_Record] = []
        # Looked up once: nn.Module's attribute lookup of a parameter costs a Python call.
        self.weight: nn.Parameter = layer.weight
        self.bias: nn.Parameter | None = getattr(layer, "bias", None)
        self.uses = 0  # calls in the owner's current forward pass
        self.sequence_dims = 2 if isinstance(layer, nn.Embedding) else 3
        self.time_first = not owner.batch_first and not isinstance(layer, nn.Conv1d)
        # Inputs with fewer axes have no batch axis to read (an unbatched call).
        self.min_dims = 3 if isinstance(layer, nn.Conv1d) else (
            1 if isinstance(layer, nn.Embedding) else 2)
        self._uses_of = -1

    def plain_use(self, x: torch.Tensor) -> bool:
        """Whether this call sees a batch of one sample (on its batch axis), and if so note
        the plain pass on the owner: the layer then runs its own forward and autograd
        accumulates its ordinary gradient, which for one sample *is* the per-sample gradient
        (the optimiser clips it whole, see ``BookkeepingModule._plain_sums``)."""
        dims = x.dim()
        if dims < self.min_dims:
            return False
        axis = 1 if self.time_first and dims >= self.sequence_dims else 0
        if x.shape[axis] != 1:
            return False
        self.owner.plain_pass()
        return True

    def count_use(self) -> int:
        """Count one call of the layer in the owner's current forward pass; its id."""
        forward_id = self.owner.forward_id
        if forward_id != self._uses_of:
            self._uses_of, self.uses = forward_id, 0
        self.uses += 1
        return forward_id

    def record(
        self, *, forward_id: int, activations: torch.Tensor, backprops: torch.Tensor,
    ) -> None:
        # A Linear's input has a feature axis, an Embedding's indices have none; a Conv1d's
        # input is (batch, channels, length) whatever the model's batch_first.
        if self.time_first and activations.dim() >= self.sequence_dims:
            activations, backprops = activations.movedim(1, 0), backprops.movedim(1, 0)
        if activations.requires_grad:
            activations = activations.detach()
        self.records.append(_Record(forward_id, activations, backprops.detach()))


class _Conv1dCapture(torch.autograd.Function):
    """``F.conv1d`` whose backward returns only the input gradient and records ``(x, g)``."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer_state):  # noqa: ANN001 - autograd signature
        ctx.save_for_backward(x, weight)
        ctx.layer_state = layer_state
        ctx.forward_id = layer_state.owner.forward_id
        layer = layer_state.layer
        return F.conv1d(x, weight, bias, layer.stride, layer.padding, layer.dilation)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001
        x, weight = ctx.saved_tensors
        layer = ctx.layer_state.layer
        ctx.layer_state.record(forward_id=ctx.forward_id, activations=x, backprops=grad_output)
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.nn.grad.conv1d_input(x.shape, weight, grad_output, layer.stride,
                                                    layer.padding, layer.dilation)
        return grad_input, None, None, None


def _captured_conv1d_forward(state: _LayerState):
    layer = state.layer

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not (layer.training and torch.is_grad_enabled()) or state.plain_use(x):
            return F.conv1d(x, layer.weight, layer.bias, layer.stride, layer.padding,
                            layer.dilation)
        return _Conv1dCapture.apply(x, layer.weight, layer.bias, state)

    return forward


def _conv1d_windows(layer: nn.Conv1d, x: torch.Tensor, g: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C_in, L) inputs and (B, C_out, L_out) output gradients as the sequences of a
    Linear: (B, L_out, C_in k) input windows and (B, L_out, C_out) gradients."""
    # Zero padding, then each output position's window as a strided view (Tensor.unfold),
    # copied once into (B, L_out, C_in, k) order: several times faster than F.unfold's
    # im2col on the CPU.
    kernel, dilation, stride = layer.kernel_size[0], layer.dilation[0], layer.stride[0]
    padded = F.pad(x, (layer.padding[0], layer.padding[0])) if layer.padding[0] else x
    span = dilation * (kernel - 1) + 1
    windows = padded.unfold(2, span, stride)  # (B, C_in, L_out, span)
    if dilation > 1:
        windows = windows[..., ::dilation]
    batch, channels, steps, taps = windows.shape
    windows = windows.permute(0, 2, 1, 3).reshape(batch, steps, channels * taps)
    return windows, g.transpose(1, 2)


def _captured_forward(state: _LayerState):
    if isinstance(state.layer, nn.Embedding):
        return _captured_embedding_forward(state)
    if isinstance(state.layer, nn.Conv1d):
        return _captured_conv1d_forward(state)
    layer = state.layer
    attributes = layer.__dict__
    weight, bias = state.weight, state.bias

    def forward(x: torch.Tensor) -> torch.Tensor:
        # Like Opacus: nothing is recorded in eval mode or without gradients; a batch of
        # one sample records nothing either (its gradient is the sample's).
        if not (attributes["training"] and torch.is_grad_enabled()) or state.plain_use(x):
            return F.linear(x, weight, bias)
        return _LinearCapture.apply(x, weight, bias, state)

    return forward


def _captured_embedding_forward(state: _LayerState):
    layer = state.layer

    def forward(indices: torch.Tensor) -> torch.Tensor:
        if not (layer.training and torch.is_grad_enabled()) or state.plain_use(indices):
            return F.embedding(indices, layer.weight)
        return _EmbeddingCapture.apply(indices, layer.weight, state)

    return forward


def _gru_forward(gru: DPGRU, *, owner: BookkeepingModule):
    """Opacus' DPGRU forward with each layer's input projection taken once over the whole
    sequence (one ``ih`` call on ``(B, T, D)``, one record) instead of once per time step,
    and the recurrent ``hh`` Linear recorded once per layer too (:func:`_recurrence`).

    Same cell arithmetic as ``DPGRUCell`` (r, z, n gates; ``h = (1 - z) n + z h_prev``,
    taken as one ``lerp``). Packed sequences, two directions, dropout between layers, eval
    mode and no-grad calls keep Opacus' own forward.
    """
    original = type(gru).forward.__get__(gru)

    def forward(input, state_init=None):  # noqa: A002, ANN001, ANN202 - DPGRU's signature
        if (isinstance(input, PackedSequence) or gru.bidirectional or gru.dropout
                or not (gru.training and torch.is_grad_enabled())):
            return original(input, state_init)
        x = input if gru.batch_first else input.transpose(0, 1)  # (B, T, D)
        batch, size = x.shape[0], gru.hidden_size
        if state_init is None:
            state_init = torch.zeros(gru.num_layers, batch, size, dtype=x.dtype,
                                     device=x.device)
        last = []
        for layer, cell in enumerate(gru.cells):
            # The captured Linear reads its records in the owner's batch order.
            projected = cell.ih(x if owner.batch_first else x.transpose(0, 1))
            if not owner.batch_first:
                projected = projected.transpose(0, 1)
            h0 = state_init[layer]
            recurrent = _recurrence(owner, cell.hh, h0, steps=projected.shape[1])
            gates_rz = projected[..., :2 * size].unbind(1)
            gates_n = projected[..., 2 * size:].unbind(1)
            h, steps = h0, []
            for step in range(len(gates_rz)):
                hh = recurrent(h, step)
                rz = torch.sigmoid(gates_rz[step] + hh[:, :2 * size])
                n = torch.tanh(torch.addcmul(gates_n[step], rz[:, :size], hh[:, 2 * size:]))
                h = torch.lerp(n, h, rz[:, size:])  # (1 - z) n + z h
                steps.append(h)
            x = torch.stack(steps, dim=1)
            recurrent.done(h0, x)
            last.append(h)
        output = x if gru.batch_first else x.transpose(0, 1)
        return output, torch.stack(last, dim=0)

    return forward


class _Recurrence:
    """A recurrent Linear (a GRU's ``hh``) called once per time step, recorded as *one*
    sequence: each step's output gets a zero "tap", a view of one ``(T, B, out)`` leaf,
    so that one hook on the leaf receives every step's output gradient at once. The steps
    run over the detached weights (autograd computes only the hidden state's gradient); the
    record is the ``(B, T, in)`` hidden states fed in and the ``(B, T, out)`` gradients, the
    same as the step-by-step records joined into a sequence, at a fraction of the calls."""

    def __init__(self, state: _LayerState, h0: torch.Tensor, steps: int) -> None:
        layer = state.layer
        self.state, self.forward_id = state, state.owner.forward_id
        self.weight = layer.weight.detach()
        self.bias = None if layer.bias is None else layer.bias.detach()
        self.steps = steps
        self.taps: torch.Tensor | None = None
        self.tap: tuple[torch.Tensor, ...] = ()

    def __call__(self, h: torch.Tensor, step: int) -> torch.Tensor:
        out = F.linear(h, self.weight, self.bias)
        if self.taps is None:  # in the output's dtype (autocast may have changed it)
            self.taps = torch.zeros((self.steps, *out.shape), dtype=out.dtype,
                                    device=out.device, requires_grad=True)
            self.tap = self.taps.unbind(0)
        return out + self.tap[step]

    def done(self, h0: torch.Tensor, outputs: torch.Tensor) -> None:
        """Record the hidden states fed in (``h0``, then every output but the last) with
        the taps' gradient, when it arrives."""
        inputs = torch.cat([h0.detach().unsqueeze(1), outputs.detach()[:, :-1]], dim=1)
        state, forward_id = self.state, self.forward_id
        self.taps.register_hook(lambda g: state.records.append(
            _Record(forward_id, inputs, g.transpose(0, 1))))


class _LayerCalls:
    """A recurrent Linear called through its own forward at every step (frozen, or a batch
    of one sample: see :meth:`_LayerState.plain_use`)."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def __call__(self, h: torch.Tensor, step: int) -> torch.Tensor:
        return self.layer(h)

    def done(self, h0: torch.Tensor, outputs: torch.Tensor) -> None:
        pass


def _recurrence(owner: BookkeepingModule, layer: nn.Module, h0: torch.Tensor, *, steps: int
                ) -> _Recurrence | _LayerCalls:
    state = owner.state_of(layer)
    if state is None or h0.shape[0] == 1 or steps == 0:
        return _LayerCalls(layer)
    return _Recurrence(state, h0, steps)


class BookkeepingModule(nn.Module):
    """Wraps ``module`` (kept as ``_module``, like Opacus' ``GradSampleModule``) so that its
    Linear layers record activations and output gradients instead of computing gradients.

    Use with :class:`BookkeepingDPOptimizer`, which turns the records into clipped sums.
    One backward pass per optimiser step (Poisson sampling forbids accumulating batches).
    """

    def __init__(self, module: nn.Module, *, batch_first: bool = True,
                 loss_reduction: str = "mean") -> None:
        super().__init__()
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"unexpected loss_reduction: {loss_reduction!r}")
        decision = fast_path_support(module)
        if not decision.fast_path:
            raise ValueError(decision.reason)
        self._module = module
        object.__setattr__(self, "_inner", module)  # the same module, unregistered
        self.batch_first = batch_first
        self.loss_reduction = loss_reduction
        self.forward_id = 0
        # Forward passes that ran a batch of one sample through plain layers (see
        # _LayerState.plain_use), since the last optimiser step.
        self._plain_ids: set[int] = set()
        self._states: list[_LayerState] = []
        self._recurrences: list[nn.Module] = []
        self._entry_cache: dict = {}
        for name, sub in module.named_modules():
            trainable = any(p.requires_grad for p in sub.parameters(recurse=False))
            if _has_fast_path(sub) and trainable:
                state = _LayerState(owner=self, layer=sub, name=name)
                # An instance attribute shadows the class's forward; cleanup() deletes it.
                sub.forward = _captured_forward(state)
                self._states.append(state)
            elif type(sub) is DPGRU:
                sub.forward = _gru_forward(sub, owner=self)
                self._recurrences.append(sub)
        self._layer_params = [p for state in self._states for p in (state.weight, state.bias)
                              if p is not None]
        # Whether the compiled clipped sum and noise (ml_core.native) may run: they take
        # float32 parameters (False: the Python path, e.g. to compare the two).
        self._native = all(p.dtype is torch.float32 for p in self._layer_params)

    def forward(self, *args, **kwargs):
        # Plain attribute access (nn.Module's __setattr__ and __getattr__ cost a Python call
        # each, on every step of a model whose whole step takes a few hundred microseconds).
        attributes = self.__dict__
        attributes["forward_id"] += 1
        return attributes["_inner"](*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("_module"), name)

    def state_of(self, layer: nn.Module) -> _LayerState | None:
        """The recording state of ``layer`` (None: not one of the recorded layers)."""
        for state in self._states:
            if state.layer is layer:
                return state
        return None

    @property
    def layer_states(self) -> Sequence[_LayerState]:
        return tuple(self._states)

    def clear_records(self) -> None:
        for state in self._states:
            state.records.clear()
        self._plain_ids.clear()

    def plain_pass(self) -> None:
        """A layer runs plainly on a batch of one sample in this forward pass: at its first
        such call, the layers' gradients are reset, so that autograd's accumulated gradient
        is this pass's alone."""
        forward_id = self.forward_id
        if forward_id not in self._plain_ids:
            self._plain_ids.add(forward_id)
            for param in self._layer_params:
                param.grad = None

    def cleanup(self) -> None:
        """Restore the wrapped module's Linear layers to their own forward."""
        self.clear_records()
        for layer in [state.layer for state in self._states] + self._recurrences:
            layer.__dict__.pop("forward", None)
        self._states, self._recurrences, self._layer_params = [], [], []
        self._entry_cache.clear()

    def clipped_sum(
        self, *, max_grad_norm: float, params: Iterable[nn.Parameter] | None = None
    ) -> tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]:
        """The clipped sum of per-sample gradients, per parameter, and the per-sample norms.

        Same semantics as ``DPOptimizer.clip_and_accumulate`` over per-sample gradients
        from ``GradSampleModule(loss_reduction=...)``: with a mean-reduced loss the recorded
        output gradients carry a ``1/B`` factor, which is undone here (Opacus multiplies its
        backprops by the batch size). Parameters without records get zeros.
        """
        by_id, norms = self.clipped_sums_by_id(max_grad_norm=max_grad_norm, params=params)
        named = {id(p): p for state in self._states for p in (state.weight, state.bias)
                 if p is not None}
        return {named[key]: grad for key, grad in by_id.items()}, norms

    def clipped_sums_by_id(
        self, *, max_grad_norm: float, params: Iterable[nn.Parameter] | None = None
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """:meth:`clipped_sum` keyed by ``id(parameter)`` (what the optimiser's step uses:
        a parameter's own hash is a Python call).

        A small model's step is mostly fixed cost per tensor operation, so the common case,
        a 2-D Linear layer used once whose row norms were taken in the forward and backward
        passes, costs a few operations: all such layers' norms are squared and combined in
        one stacked tensor, and each layer's clipped sum is one scaling and one matmul (and
        a matrix-vector product for its bias).
        """
        entries, wanted, param_count = self._entries(params)
        if self._plain_ids:
            return self._plain_sums(entries, param_count, max_grad_norm=max_grad_norm)
        flat: list[tuple[_Entry, _Record]] = []  # 2-D layers used once, norms recorded
        layers: list[_StackedLayer | _StackedEmbedding] = []
        forward_ids: set[int] = set()
        for entry in entries:
            records = entry.state.records
            if not records:
                continue
            record = records[0]
            if (len(records) == 1 and record.activations.dim() == 2
                    and isinstance(entry.state.layer, nn.Linear) and entry.weight is not None
                    and record.activations.dtype is torch.float32
                    and record.backprops.dtype is torch.float32):
                flat.append((entry, record))
                forward_ids.add(record.forward_id)
                continue
            layer = _stack_records(entry.state, wanted)
            if layer is not None:
                layers.append(layer)
                forward_ids |= layer.forward_ids
        if len(forward_ids) > 1:
            raise RuntimeError(
                "more than one backward pass between optimiser steps: accumulating batches is "
                "not supported with Poisson sampling; call optimizer.step() after each backward"
            )
        first = flat[0][1].activations if flat else layers[0].a if layers else None
        batch = first.shape[0] if first is not None else 0
        device = first.device if first is not None else None
        scale = float(batch) if self.loss_reduction == "mean" else 1.0
        if flat and not layers and self._native and device.type == "cpu":
            op = native.flat_clipped_sums()
            if op is not None:
                return self._native_flat_sums(op, flat, entries, param_count, scale=scale,
                                              max_grad_norm=max_grad_norm)
        sq_norms = _flat_sq_norms(flat) if flat else None
        for layer in layers:
            part = layer.sq_norms()
            if part.dtype is not torch.float32:
                part = part.to(torch.float32)
            sq_norms = part if sq_norms is None else sq_norms + part
        if sq_norms is None:
            sq_norms = torch.zeros(batch, device=device, dtype=torch.float32)
        norms = sq_norms.sqrt_().mul_(scale)
        # Opacus' (max_grad_norm / (norms + 1e-6)).clamp(max=1.0), op for op (the Python
        # division of a number by a tensor is reciprocal, then multiply), without temporaries.
        clip = torch.add(norms, CLIP_EPSILON).reciprocal_().mul_(max_grad_norm).clamp_(max=1.0)
        factor = clip.mul_(scale)
        in_place = _InPlace([t for _, r in flat for t in (r.activations, r.backprops)]
                            + [t for layer in layers for t in (layer.a, layer.g)])
        sums: dict[int, torch.Tensor] = {}
        self.clear_records()
        if flat:
            _flat_clipped_sums(flat, factor, in_place, sums)
            flat.clear()
        while layers:
            # Drop each layer's (a, g) as soon as its sum is taken: a lower peak memory.
            layer = layers.pop(0)
            in_place_ok = in_place(layer.g)
            for param, grad in layer.clipped_sum(factor, in_place=in_place_ok).items():
                sums[id(param)] = grad
        _zeros_for_unused(sums, entries, param_count)
        return sums, norms

    def _native_flat_sums(self, op, flat: list[tuple[_Entry, _Record]],  # noqa: ANN001
                          entries: Sequence[_Entry], param_count: int, *, scale: float,
                          max_grad_norm: float) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """The flat layers' clipped sums by the compiled operator (:mod:`ml_core.native`):
        the arithmetic of the Python path below, bit for bit, in one call."""
        norms = [_flat_norms(record) for _, record in flat]
        out = op([record.activations for _, record in flat],
                 [record.backprops for _, record in flat],
                 [a_norm for _, a_norm in norms], [g_norm for g_norm, _ in norms],
                 [entry.bias is not None for entry, _ in flat], scale, max_grad_norm,
                 CLIP_EPSILON)
        self.clear_records()
        flat_sums = iter(out)
        per_sample_norms = next(flat_sums)
        sums: dict[int, torch.Tensor] = {}
        for entry, _ in flat:
            sums[id(entry.weight)] = next(flat_sums)
            if entry.bias is not None:
                sums[id(entry.bias)] = next(flat_sums)
        flat.clear()
        _zeros_for_unused(sums, entries, param_count)
        return sums, per_sample_norms

    def _plain_sums(self, entries: Sequence[_Entry], param_count: int, *,
                    max_grad_norm: float) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """A batch of one sample that ran through the layers' own forward (no records):
        autograd's gradients are that sample's gradient; its norm is the norm of all of
        them together and one ``torch._foreach_mul_`` clips them (Opacus' formula; with one
        sample a mean-reduced loss is its sum)."""
        plain_ids = self._plain_ids
        recorded = any(state.records for state in self._states)
        if len(plain_ids) > 1 or recorded:
            self.clear_records()
            raise RuntimeError(
                "more than one forward pass, or batches of different sizes, between "
                "optimiser steps: accumulating batches is not supported with Poisson "
                "sampling; call optimizer.step() after each backward")
        sums: dict[int, torch.Tensor] = {}
        for entry in entries:
            for param in (entry.weight, entry.bias):
                if param is not None and param.grad is not None:
                    sums[id(param)] = param.grad
                    param.grad = None
        self.clear_records()
        if sums:
            grads = list(sums.values())
            parts = torch._foreach_norm(grads)
            if any(part.dtype is not torch.float32 for part in parts):
                parts = [part.to(torch.float32) for part in parts]
            norms = torch.linalg.vector_norm(torch.stack(parts)).reshape(1)
            clip = torch.add(norms, CLIP_EPSILON).reciprocal_().mul_(max_grad_norm).clamp_(
                max=1.0)
            torch._foreach_mul_(grads, clip.reshape(()))
        else:
            device = self._layer_params[0].device if self._layer_params else None
            norms = torch.zeros(1, device=device, dtype=torch.float32)
        _zeros_for_unused(sums, entries, param_count)
        return sums, norms

    def _entries(self, params: Iterable[nn.Parameter] | None
                 ) -> tuple[tuple[_Entry, ...], set[int] | None, int]:
        """The layers holding a wanted trainable parameter, with those parameters (None for
        a frozen or unwanted one), the wanted ids and the number of wanted parameters;
        cached for a parameter list (the optimiser passes the same list every step) while
        the layers' ``requires_grad`` flags stay as they were."""
        flags = tuple([param.requires_grad for param in self._layer_params])
        key = None if params is None else id(params)
        cached = self._entry_cache.get(key)
        if cached is not None and cached[0] is params and cached[1] == flags:
            return cached[2:]
        given = params
        params = None if params is None else list(params)
        wanted = None if params is None else {id(p) for p in params}

        def keep(param: nn.Parameter | None) -> nn.Parameter | None:
            if param is None or not param.requires_grad:
                return None
            return param if wanted is None or id(param) in wanted else None

        entries = []
        for state in self._states:
            entry = _Entry(state=state, weight=keep(state.weight), bias=keep(state.bias))
            if entry.weight is not None or entry.bias is not None:
                entries.append(entry)
        count = sum((entry.weight is not None) + (entry.bias is not None) for entry in entries)
        if isinstance(given, list) or given is None:  # (an iterator cannot be cached)
            self._entry_cache[key] = (given, flags, tuple(entries), wanted, count)
        return tuple(entries), wanted, count


class _Entry(NamedTuple):
    """One layer of the clipped sum: its state and its wanted trainable parameters."""

    state: _LayerState
    weight: nn.Parameter | None
    bias: nn.Parameter | None


def _flat_sq_norms(flat: Sequence[tuple[_Entry, _Record]]) -> torch.Tensor:
    """Squared per-sample gradient norms summed over 2-D layers used once: ``||g_i||^2
    (||a_i||^2 + 1)`` with a bias, ``||g_i||^2 ||a_i||^2`` without, every layer's recorded
    row norms squared and combined in one stacked tensor (a fixed handful of operations)."""
    count = len(flat)
    if count == 1:
        entry, record = flat[0]
        g_sq, a_sq = (norm.square() for norm in _flat_norms(record))
        return torch.addcmul(g_sq, g_sq, a_sq) if entry.bias is not None else g_sq.mul_(a_sq)
    norms = [_flat_norms(record) for _, record in flat]
    stacked = torch.stack([g for g, _ in norms] + [a for _, a in norms]).square_()
    g_sq, a_sq = stacked[:count], stacked[count:]
    biases = [entry.bias is not None for entry, _ in flat]
    if all(biases):
        per_layer = torch.addcmul(g_sq, g_sq, a_sq)
    elif not any(biases):
        per_layer = g_sq.mul_(a_sq)
    else:
        ones = torch.tensor(biases, dtype=a_sq.dtype, device=a_sq.device).unsqueeze(1)
        per_layer = a_sq.add_(ones).mul_(g_sq)
    return per_layer.sum(0)


# Below this many elements a gradient is scaled into a new tensor rather than in place: the
# check that no other record shares its memory costs more than the copy saves.
IN_PLACE_MIN_ELEMENTS = 1 << 15


class _InPlace:
    """Whether a recorded gradient may be scaled in its own memory: contiguous (an expanded
    gradient, e.g. of ``out.sum()``, must not be written to) and shared with no other record
    (autograd can hand one gradient tensor to several layers, ``a(x) + b(x)``)."""

    def __init__(self, recorded: list[torch.Tensor]) -> None:
        self._recorded = recorded
        self._storages: Counter | None = None

    def __call__(self, g: torch.Tensor) -> bool:
        if not g.is_contiguous():
            return False
        if len(self._recorded) <= 2:  # one record: nothing to share with
            return True
        if g.numel() < IN_PLACE_MIN_ELEMENTS:
            return False
        if self._storages is None:
            self._storages = Counter(_storage(t) for t in self._recorded)
        return self._storages[_storage(g)] == 1


def _flat_norms(record: _Record) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D record's output-gradient and input row norms (taken in the forward and
    backward passes, or now where they were not)."""
    g_norm, a_norm = record.backprop_norm, record.activation_norm
    return (_row_norms(record.backprops) if g_norm is None else g_norm,
            _row_norms(record.activations) if a_norm is None else a_norm)


def _zeros_for_unused(sums: dict[int, torch.Tensor], entries: Sequence[_Entry],
                      param_count: int) -> None:
    """A zero sum for each wanted parameter no recorded pass reached (a layer unused by
    this batch), so every parameter gets its noise."""
    if len(sums) < param_count:
        for entry in entries:
            for param in (entry.weight, entry.bias):
                if param is not None and id(param) not in sums:
                    sums[id(param)] = torch.zeros_like(param)


def _flat_clipped_sums(flat: Sequence[tuple[_Entry, _Record]], factor: torch.Tensor | None,
                       in_place: _InPlace | None, sums: dict[int, torch.Tensor]) -> None:
    """``sum_i factor_i g_i^T a_i`` (and ``sum_i factor_i g_i`` for a bias) of 2-D layers:
    the narrower side scaled, one matmul (as :meth:`_StackedLayer.clipped_sum`); plain
    sums when ``factor`` is None."""
    column = None if factor is None else factor.unsqueeze(1)
    for entry, record in flat:
        a, g = record.activations, record.backprops
        weight, bias = entry.weight, entry.bias
        if column is None:
            grad = g.t().mm(a)
            sums[id(weight)] = grad if grad.dtype is weight.dtype else grad.to(weight.dtype)
            if bias is not None:
                grad = g.sum(0)
                sums[id(bias)] = grad if grad.dtype is bias.dtype else grad.to(bias.dtype)
            continue
        if a.shape[1] < g.shape[1]:
            # ((c a)^T g)^T: the same sum, a transposed view; on the CPU's BLAS the narrow
            # output side first is the faster product (0.16 against 0.21 ms at 1024 x 64
            # inputs and 256 outputs).
            # The product is written through the transposed view of a (out, in) tensor
            # (BLAS takes a column-major output as it is): the parameter's own layout, so
            # the step adds its noise in place.
            grad = torch.empty(g.shape[1], a.shape[1], dtype=g.dtype, device=g.device)
            torch.mm((a * column).t(), g, out=grad.t())
            sums[id(weight)] = grad if grad.dtype is weight.dtype else grad.to(weight.dtype)
            if bias is not None:
                grad = g.t().mv(factor)
                sums[id(bias)] = grad if grad.dtype is bias.dtype else grad.to(bias.dtype)
            continue
        if in_place(g):
            g = g.mul_(column)
        else:
            g = g * column
        grad = g.t().mm(a)
        sums[id(weight)] = grad if grad.dtype is weight.dtype else grad.to(weight.dtype)
        if bias is not None:
            grad = g.sum(0)
            sums[id(bias)] = grad if grad.dtype is bias.dtype else grad.to(bias.dtype)


@dataclass
class _StackedLayer:
    a: torch.Tensor  # (B, in) or (B, T, in)
    g: torch.Tensor  # (B, out) or (B, T, out)
    weight: nn.Parameter | None
    bias: nn.Parameter | None
    forward_ids: frozenset[int]
    a_norm: torch.Tensor | None = None  # (B,) row norms of a 2-D a, when recorded
    g_norm: torch.Tensor | None = None
    # A sequence layer's per-sample weight gradients (B, out, in), when they were the
    # cheaper way to its norms, and its per-sample bias gradients (B, out): the clipped
    # sums are then one matrix-vector product each.
    per_sample: torch.Tensor | None = None
    bias_per_sample: torch.Tensor | None = None

    def sq_norms(self) -> torch.Tensor:
        """Squared per-sample gradient norm of this layer's (wanted) parameters, shape (B,)."""
        a, g = self.a, self.g
        if a.dim() == 2:
            g_sq = self.g_norm.square() if self.g_norm is not None else _row_sq_norms(g)
            if self.weight is None:
                return g_sq
            # weight: ||g_i||^2 ||a_i||^2; bias: ||g_i||^2
            a_sq = self.a_norm.square() if self.a_norm is not None else _row_sq_norms(a)
            return g_sq * (a_sq + 1) if self.bias is not None else g_sq * a_sq
        total = None
        if self.weight is not None:
            if _gram_is_cheaper(a, g):
                total = _sequence_weight_sq_norms(a, g)
            else:
                self.per_sample = torch.bmm(g.transpose(1, 2), a)
                total = _row_sq_norms(self.per_sample.flatten(1))
        if self.bias is not None:
            self.bias_per_sample = g.sum(1)
            bias_sq = _row_sq_norms(self.bias_per_sample)
            total = bias_sq if total is None else bias_sq.add_(total)
        return total

    def clipped_sum(
        self, factor: torch.Tensor, *, in_place: bool
    ) -> dict[nn.Parameter, torch.Tensor]:
        """``sum_i factor_i * grad_i`` for weight and bias: one matmul for the weight.

        With ``in_place``, scales ``g`` in its own memory when it is contiguous (a gradient
        autograd has finished with and no other record shares), saving a (B, out) temporary.
        """
        a, g = self.a, self.g
        out: dict[nn.Parameter, torch.Tensor] = {}
        if self.per_sample is not None or (self.weight is None
                                           and self.bias_per_sample is not None):
            factor = factor.to(g.dtype)
            if self.per_sample is not None:
                weight_sum = torch.mv(self.per_sample.flatten(1).t(), factor)
                out[self.weight] = weight_sum.view(self.weight.shape).to(self.weight.dtype)
            if self.bias is not None:
                out[self.bias] = torch.mv(self.bias_per_sample.t(), factor).to(self.bias.dtype)
            return out
        shape = (-1,) + (1,) * (g.dim() - 1)
        if self.weight is not None and a.shape[-1] < g.shape[-1]:
            # Scale the narrower side: (c g)^T a = g^T (c a), and the bias's sum is one
            # matrix-vector product, so no (B, out) pass over g is written.
            factor = factor.to(g.dtype)
            scaled = a * factor.reshape(shape).to(a.dtype)
            weight_sum = g.reshape(-1, g.shape[-1]).t().mm(scaled.reshape(-1, a.shape[-1]))
            out[self.weight] = weight_sum.reshape(self.weight.shape).to(self.weight.dtype)
            if self.bias is not None:
                per_step = torch.mv(g.flatten(1).t(), factor)  # (T * out,) or (out,)
                out[self.bias] = per_step.view(-1, g.shape[-1]).sum(0).to(self.bias.dtype)
            return out
        factor = factor.to(g.dtype).reshape(shape)
        # An expanded gradient (e.g. of ``out.sum()``) is not contiguous and must not be
        # written to.
        g = g.mul_(factor) if in_place and g.is_contiguous() else g * factor
        if self.weight is not None:
            weight_sum = g.reshape(-1, g.shape[-1]).t().mm(a.reshape(-1, a.shape[-1]))
            # A Conv1d's (C_out, C_in k) sum in its weight's (C_out, C_in, k) shape.
            out[self.weight] = weight_sum.reshape(self.weight.shape).to(self.weight.dtype)
        if self.bias is not None:
            out[self.bias] = g.sum(tuple(range(g.dim() - 1))).to(self.bias.dtype)
        return out


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _row_norms(x: torch.Tensor) -> torch.Tensor:
    # One fused reduction over each row, float32 at least.
    if x.dtype is torch.float32:
        return torch.linalg.vector_norm(x, dim=1)
    return torch.linalg.vector_norm(x, dim=1, dtype=torch.promote_types(x.dtype, torch.float32))


def _row_sq_norms(x: torch.Tensor) -> torch.Tensor:
    # One fused reduction, no (B, d) temporary; float32 at least.
    if x.dtype is torch.float32:
        return torch.linalg.vector_norm(x, dim=1).square_()
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.linalg.vector_norm(x, dim=1, dtype=dtype).square_()


def _gram_is_cheaper(a: torch.Tensor, g: torch.Tensor) -> bool:
    """Whether the ghost (Gram) form of a sequence layer's norms, ``T^2 (in + out)`` per
    sample, costs no more than its per-sample gradient, ``T in out``."""
    t, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    return t * (d_in + d_out) <= d_in * d_out


def _sequence_weight_sq_norms(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norm of ``g_i^T a_i`` for (B, T, in) / (B, T, out) inputs.

    Ghost form ``<a_i a_i^T, g_i g_i^T>`` costs ``T^2 (in + out)`` per sample; the
    per-sample gradient costs ``T in out``: take the cheaper.
    """
    if _gram_is_cheaper(a, g):
        gram_a = torch.bmm(a, a.transpose(1, 2))
        return gram_a.mul_(torch.bmm(g, g.transpose(1, 2))).sum((1, 2))
    per_sample = torch.bmm(g.transpose(1, 2), a)
    return _row_sq_norms(per_sample.flatten(1))


def _stack_records(state: _LayerState, wanted: set[int] | None
                   ) -> _StackedLayer | _StackedEmbedding | None:
    layer = state.layer
    if isinstance(layer, nn.Embedding):
        return _stack_embedding_records(state, wanted)
    weight = state.weight if state.weight.requires_grad else None
    bias = state.bias if state.bias is not None and state.bias.requires_grad else None
    if wanted is not None:
        weight = weight if weight is not None and id(weight) in wanted else None
        bias = bias if bias is not None and id(bias) in wanted else None
    if not state.records or (weight is None and bias is None):
        return None
    records = state.records
    if isinstance(layer, nn.Conv1d):
        records = [r._replace(**dict(zip(("activations", "backprops"),
                                         _conv1d_windows(layer, r.activations, r.backprops),
                                         strict=True)))
                   for r in records]
    if len(records) == 1:
        a, g = records[0].activations, records[0].backprops
        if a.dim() == 2:
            return _StackedLayer(a=a, g=g, weight=weight, bias=bias,
                                 forward_ids=frozenset((records[0].forward_id,)),
                                 a_norm=records[0].activation_norm,
                                 g_norm=records[0].backprop_norm)
        if a.dim() > 3:
            a, g = a.flatten(1, -2), g.flatten(1, -2)
    else:
        # A layer used several times in one forward pass: its per-sample gradient is the sum
        # over uses, which is exactly a longer "sequence" (B, T1 + T2 + ..., d).
        def as_sequence(t: torch.Tensor) -> torch.Tensor:
            # (an explicit step count: an empty batch has no -1 to infer)
            return t.reshape(t.shape[0], math.prod(t.shape[1:-1]), t.shape[-1])

        a = torch.cat([as_sequence(r.activations) for r in records], dim=1)
        g = torch.cat([as_sequence(r.backprops) for r in records], dim=1)
    return _StackedLayer(a=a, g=g, weight=weight, bias=bias,
                         forward_ids=frozenset(r.forward_id for r in records))


# Up to this many lookups per sample, an embedding's per-sample norms come from the (T, T)
# Gram form (batched matmuls); beyond, from a sort of the (sample, row) pairs.
GRAM_MAX_LOOKUPS = 64


# A sample's per-row gradients (B, rows, dim) are materialised, when that is cheaper than
# the Gram form, up to this many elements.
PER_SAMPLE_MAX_ELEMENTS = 1 << 22


def _embedding_per_sample_is_cheaper(batch: int, steps: int, rows: int, dim: int) -> bool:
    """Whether a small table's per-sample gradients, ``rows dim`` written and read per
    sample (plus a scatter of ``steps dim``), cost less than the Gram form's ``steps^2
    (dim + 2)``; within a memory cap."""
    return (batch * rows * dim <= PER_SAMPLE_MAX_ELEMENTS
            and 2 * rows * dim + steps * dim < steps * steps * (dim + 2))


@dataclass
class _StackedEmbedding:
    a: torch.Tensor  # (B, T) row indices (T = 1 for one lookup per sample)
    g: torch.Tensor  # (B, T, dim): d loss / d output
    weight: nn.Parameter
    forward_ids: frozenset[int]
    # (B, rows, dim) per-sample gradients of a small table, when they were the cheaper way
    # to its norms: the clipped sum is then one matrix-vector product.
    per_sample: torch.Tensor | None = None

    def sq_norms(self) -> torch.Tensor:
        """Squared norm of each sample's weight gradient: a row looked up several times by
        one sample gets the sum of its output gradients, then the rows' norms add up, i.e.
        ``sum_{t,s} [row_t = row_s] <g_t, g_s>``."""
        a, g = self.a, self.g
        steps = a.shape[1]
        if steps == 1:  # one lookup per sample: the output gradient's norm
            return _row_sq_norms(g[:, 0])
        batch, (rows, dim) = a.shape[0], self.weight.shape
        if _embedding_per_sample_is_cheaper(batch, steps, rows, dim):
            # Each sample's lookups scattered to their rows: its gradient, then its norm.
            per_sample = torch.zeros(batch, rows, dim, device=g.device, dtype=g.dtype)
            per_sample.scatter_add_(1, a.unsqueeze(-1).expand(-1, -1, dim), g)
            self.per_sample = per_sample
            return _row_sq_norms(per_sample.flatten(1))
        if steps <= GRAM_MAX_LOOKUPS:
            same_row = a.unsqueeze(2) == a.unsqueeze(1)
            # (a product with 0 or 1: exactly the masked Gram matrix)
            sq = torch.bmm(g, g.transpose(1, 2)).mul_(same_row).sum((1, 2))
            return sq if sq.dtype is torch.float32 else sq.to(torch.float32)
        # Long sequences: sum each sample's gradients per distinct row, then take norms.
        batch, vocab = a.shape[0], self.weight.shape[0]
        samples = torch.arange(batch, device=a.device).repeat_interleave(steps)
        keys = samples * vocab + a.reshape(-1)
        unique, inverse = torch.unique(keys, return_inverse=True)
        summed = torch.zeros(len(unique), g.shape[-1], device=g.device,
                             dtype=g.dtype).index_add_(0, inverse, g.reshape(-1, g.shape[-1]))
        out = torch.zeros(batch, device=g.device, dtype=torch.float32)
        return out.index_add_(0, unique // vocab, _row_sq_norms(summed).to(torch.float32))

    def clipped_sum(
        self, factor: torch.Tensor, *, in_place: bool
    ) -> dict[nn.Parameter, torch.Tensor]:
        """``sum_i factor_i * grad_i``: every lookup's output gradient, scaled by its
        sample's factor, added to its row."""
        g = self.g
        if factor.dtype is not g.dtype:
            factor = factor.to(g.dtype)
        if self.per_sample is not None:
            weight_sum = torch.mv(self.per_sample.flatten(1).t(), factor).view(
                self.weight.shape)
            return {self.weight: weight_sum if weight_sum.dtype is self.weight.dtype
                    else weight_sum.to(self.weight.dtype)}
        factor = factor.reshape(-1, 1, 1)
        g = g.mul_(factor) if in_place and g.is_contiguous() else g * factor
        weight_sum = torch.zeros_like(self.weight, dtype=g.dtype).index_add_(
            0, self.a.reshape(-1), g.reshape(-1, g.shape[-1]))
        if weight_sum.dtype is not self.weight.dtype:
            weight_sum = weight_sum.to(self.weight.dtype)
        return {self.weight: weight_sum}


def _stack_embedding_records(state: _LayerState, wanted: set[int] | None
                             ) -> _StackedEmbedding | None:
    weight = state.weight
    if not weight.requires_grad or (wanted is not None and id(weight) not in wanted):
        return None
    if not state.records:
        return None
    # Lookups of one sample (a sequence, or several uses of the layer) are its "steps".
    # (flatten/unsqueeze, not reshape(B, -1): an empty batch has no -1 to infer.)
    a_parts = [r.activations.flatten(1) if r.activations.dim() > 1
               else r.activations.unsqueeze(1) for r in state.records]
    g_parts = [r.backprops.flatten(1, -2) if r.backprops.dim() > 2
               else r.backprops.unsqueeze(1) for r in state.records]
    a = a_parts[0] if len(a_parts) == 1 else torch.cat(a_parts, dim=1)
    g = g_parts[0] if len(g_parts) == 1 else torch.cat(g_parts, dim=1)
    return _StackedEmbedding(a=a, g=g, weight=weight,
                             forward_ids=frozenset(r.forward_id for r in state.records))


class BookkeepingDPOptimizer(DPOptimizer):
    """Opacus' ``DPOptimizer`` whose clipping step reads the book-keeping records.

    Noise, scaling by the expected batch size, step skipping and the accountant hook are
    inherited unchanged from Opacus.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, module: BookkeepingModule,
                 noise_multiplier: float, max_grad_norm: float,
                 expected_batch_size: int | None, loss_reduction: str = "mean",
                 generator: torch.Generator | None = None, secure_mode: bool = False) -> None:
        if loss_reduction != module.loss_reduction:
            raise ValueError("the optimiser's and the module's loss_reduction differ")
        super().__init__(
            optimizer, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size, loss_reduction=loss_reduction,
            generator=generator, secure_mode=secure_mode,
        )
        self.module = module
        self.last_per_sample_norms: torch.Tensor | None = None
        self._fixed_params: list[nn.Parameter] | None = None
        self._summed_grads_set = False  # whether Opacus' summed_grad path ran since zero_grad
        # Each parameter's Gaussian draw, reused from step to step (a new tensor per draw
        # cost a tenth of a small model's private step on the CPU: fresh pages each time).
        self._noise_buffers: dict[int, torch.Tensor] = {}

    @property
    def params(self) -> list[nn.Parameter]:
        """Opacus' list of the trainable parameters. Opacus rebuilds it from the parameter
        groups at every access (six times a step: a large share of a small model's step);
        the groups are fixed once the optimiser is wrapped, so it is built once."""
        if getattr(self, "_fixed_params", None) is None:
            self._fixed_params = super().params
        return self._fixed_params

    def _shapes(self) -> list[tuple[nn.Parameter, torch.Size]]:
        """Each parameter with its shape (looked up once: a shape does not change)."""
        shapes = getattr(self, "_param_shapes", None)
        if shapes is None:
            shapes = self._param_shapes = [(p, p.shape) for p in self.params]
        return shapes

    @property
    def accumulated_iterations(self) -> int:
        # One Poisson batch per step (more than one backward raises in clipped_sum).
        return 1

    def clip_and_accumulate(self) -> None:
        self._summed_grads_set = True
        sums, norms = self.module.clipped_sum(max_grad_norm=self.max_grad_norm, params=self.params)
        self.last_per_sample_norms = norms
        for p in self.params:
            grad = sums[p] if p in sums else torch.zeros_like(p)
            if p.summed_grad is not None:  # the previous step was skipped
                p.summed_grad += grad
            else:
                p.summed_grad = grad
        self.module.clear_records()

    def pre_step(self, closure=None) -> bool:  # noqa: ANN001 - Opacus' signature
        params = self.params
        if not params:
            return True
        if self.secure_mode or self._step_skip_queue or self._is_last_step_skipped:
            return self._opacus_pre_step()
        # Opacus' clip_and_accumulate, add_noise and scale_grad fused, with the same
        # arithmetic in the same order (so the same bits): per parameter, a Gaussian draw
        # of Opacus' shape from the same generator in the same parameter order, plus the
        # clipped sum, divided by the expected batch size. What it skips is Opacus' per-step
        # bookkeeping (summed_grad, processed flags, a zeros tensor per parameter). The
        # additions and divisions are one ``torch._foreach_*`` call each over all parameters
        # (on the CPU the very same per-tensor ``add_`` and ``div_``, without a Python call
        # for each).
        sums, norms = self.module.clipped_sums_by_id(max_grad_norm=self.max_grad_norm,
                                                     params=params)
        self.last_per_sample_norms = norms
        std = self.noise_multiplier * self.max_grad_norm
        generator = self.generator
        if std != 0 and self.module._native and self._native_noise(params, sums):
            if self.step_hook:
                self.step_hook(self)
            self._is_last_step_skipped = False
            return True
        grads, noisy, summed = [], [], []
        for p, shape in self._shapes():
            parameter_sum = sums.get(id(p))
            if std != 0 and parameter_sum is not None and _owns_noise_buffer(parameter_sum):
                # The draw goes into this parameter's own buffer, kept from step to step,
                # and is added to the clipped sum (a new tensor of this step's): the same
                # bits as Opacus' ``summed + noise`` without a new tensor for the noise.
                noise = self._noise_buffer(p, shape)
                torch.normal(0, std, shape, generator=generator, out=noise)
                p.grad = parameter_sum
                grads.append(parameter_sum)
                noisy.append(parameter_sum)
                summed.append(noise)
                continue
            if std == 0:
                grad = torch.zeros(shape, device=p.device, dtype=p.dtype)
            else:  # opacus.optimizers.optimizer._generate_noise, outside secure mode
                grad = torch.normal(0, std, shape, device=p.device, generator=generator)
            p.grad = grad
            grads.append(grad)
            if parameter_sum is not None:
                noisy.append(grad)
                summed.append(parameter_sum)
        if noisy:
            torch._foreach_add_(noisy, summed)  # == summed + noise, bit for bit
        if self.loss_reduction == "mean":
            torch._foreach_div_(grads, self.expected_batch_size)
        if self.step_hook:
            self.step_hook(self)
        self._is_last_step_skipped = False
        return True

    def _native_noise(self, params: list[nn.Parameter], sums: dict[int, torch.Tensor]) -> bool:
        """The loop below by the compiled operator (:mod:`ml_core.native`), where every
        parameter has a clipped sum that takes its noise in place: the same draws, sums and
        divisions. False (nothing done) where it does not apply."""
        ordered = [sums.get(id(p)) for p in params]
        if not all(s is not None and _owns_noise_buffer(s) and s.device.type == "cpu"
                   for s in ordered):
            return False
        op = native.noisy_mean()
        if op is None:
            return False
        noise = [self._noise_buffer(p, shape) for p, shape in self._shapes()]
        op(ordered, noise, self.noise_multiplier * self.max_grad_norm, self.generator,
           self.expected_batch_size, self.loss_reduction == "mean")
        for p, grad in zip(params, ordered, strict=True):
            p.grad = grad
        return True

    def _noise_buffer(self, p: nn.Parameter, shape: torch.Size) -> torch.Tensor:
        """The parameter's noise buffer (Opacus' draw's dtype and shape), made once."""
        buffer = self._noise_buffers.get(id(p))
        if buffer is None:
            buffer = self._noise_buffers[id(p)] = torch.empty(shape, device=p.device)
        return buffer

    def _opacus_pre_step(self) -> bool:
        """Opacus' own sequence (secure noise, or a step after a skipped one)."""
        self.clip_and_accumulate()
        if self._check_skip_next_step():
            self._is_last_step_skipped = True
            return False
        self.add_noise()
        self.scale_grad()
        if self.step_hook:
            self.step_hook(self)
        self._is_last_step_skipped = False
        return True

    def zero_grad(self, set_to_none: bool = False) -> None:
        self.module.clear_records()
        if self._summed_grads_set:  # Opacus' per-parameter state exists only after its path
            super().zero_grad(set_to_none)
            self._summed_grads_set = self._is_last_step_skipped
        else:
            self.original_optimizer.zero_grad(set_to_none)


def _owns_noise_buffer(parameter_sum: torch.Tensor) -> bool:
    """Whether a clipped sum (a tensor of this step's own) can take its noise in place: a
    float32 contiguous tensor (a gradient keeps its parameter's layout; any other sum
    takes a new noise tensor instead)."""
    return parameter_sum.dtype is torch.float32 and parameter_sum.is_contiguous()


class FastPrivate(NamedTuple):
    """What :func:`make_private_fast` returns; unpacks like ``make_private``'s triple + 1."""

    module: nn.Module
    optimizer: DPOptimizer
    data_loader: DataLoader
    decision: FastPathDecision


def make_private_fast(
    engine: PrivacyEngine, *, module: nn.Module, optimizer: torch.optim.Optimizer,
    data_loader: DataLoader, noise_multiplier: float, max_grad_norm: float,
    poisson_sampling: bool = True, loss_reduction: str = "mean", batch_first: bool = True,
    noise_generator: torch.Generator | None = None, fallback_mode: str = "hooks",
) -> FastPrivate:
    """``engine.make_private(...)`` on the book-keeping path when the model allows it.

    Same arguments and semantics as Opacus' ``PrivacyEngine.make_private`` (flat clipping):
    the loader a :class:`ml_core.sampling.PoissonLoader` (Opacus' ``DPDataLoader`` with
    O(batch) Poisson sampling; Opacus' own in secure mode), the optimiser a
    ``DPOptimizer`` with Opacus' noise and scaling, and ``engine.accountant`` records every
    step. When some trainable layer is not a plain ``nn.Linear`` (or ``max_grad_norm`` is a
    per-layer list), this calls ``engine.make_private(grad_sample_mode=fallback_mode)`` and
    says so in ``decision`` and in the log.
    """
    decision = fast_path_support(
        module, params=[p for group in optimizer.param_groups for p in group["params"]]
    )
    if decision.fast_path and not isinstance(max_grad_norm, (int, float)):
        decision = FastPathDecision(
            fast_path=False, reason="per-layer max_grad_norm; using Opacus' hooks"
        )
    verified = opacus_supported()
    if not verified:
        decision = FastPathDecision(
            fast_path=False, reason=(f"Opacus {OPACUS_VERSION} is not a release the "
                                     "book-keeping path was verified against; using Opacus' "
                                     "hooks"))
    # Poisson sampling in O(batch) per step (ml_core.sampling); secure mode keeps Opacus'
    # loader, whose draws come from the engine's cryptographically secure generator, and so
    # does an unverified Opacus (the O(batch) loader reuses its collate internals).
    own_poisson = poisson_sampling and not engine.secure_mode and verified
    if own_poisson:
        data_loader = PoissonLoader.from_data_loader(data_loader, batch_first=batch_first)
    if not decision.fast_path:
        logger.warning("DP-SGD fast path off: %s", decision.reason)
        wrapped, dp_optimizer, dp_loader = engine.make_private(
            module=module, optimizer=optimizer, data_loader=data_loader,
            noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
            poisson_sampling=poisson_sampling and not own_poisson,
            loss_reduction=loss_reduction, batch_first=batch_first,
            noise_generator=noise_generator, grad_sample_mode=fallback_mode,
        )
        if own_poisson:  # what engine.make_private does when it builds the loader itself
            wrapped.forbid_grad_accumulation()
        return FastPrivate(wrapped, dp_optimizer, dp_loader, decision)

    model_params = set(module.parameters())
    if any(p not in model_params for g in optimizer.param_groups for p in g["params"]):
        raise ValueError("Module parameters are different than optimizer Parameters")
    if noise_generator is not None and engine.secure_mode:
        raise ValueError("Passing seed is prohibited in secure mode")
    if engine.dataset is None:
        engine.dataset = data_loader.dataset
    if poisson_sampling and not own_poisson:
        data_loader = DPDataLoader.from_data_loader(
            data_loader, generator=engine.secure_rng, batch_first=batch_first
        )
    wrapped = BookkeepingModule(module, batch_first=batch_first, loss_reduction=loss_reduction)
    sample_rate = 1 / len(data_loader)
    # Opacus' definition (PrivacyEngine.make_private): the mean loss is divided by this.
    expected_batch_size = int(len(data_loader.dataset) * sample_rate)
    generator = engine.secure_rng if engine.secure_mode else noise_generator
    dp_optimizer = BookkeepingDPOptimizer(
        optimizer, module=wrapped, noise_multiplier=noise_multiplier,
        max_grad_norm=float(max_grad_norm), expected_batch_size=expected_batch_size,
        loss_reduction=loss_reduction, generator=generator, secure_mode=engine.secure_mode,
    )
    dp_optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
    logger.info("DP-SGD fast path on: %s", decision.reason)
    return FastPrivate(wrapped, dp_optimizer, data_loader, decision)


def make_private_fast_with_epsilon(
    engine: PrivacyEngine, *, module: nn.Module, optimizer: torch.optim.Optimizer,
    data_loader: DataLoader, target_epsilon: float, target_delta: float, epochs: int,
    max_grad_norm: float, epsilon_tolerance: float = 0.01, **kwargs,
) -> FastPrivate:
    """Like Opacus' ``make_private_with_epsilon``: the noise multiplier comes from Opacus'
    ``get_noise_multiplier`` with the engine's accountant, then :func:`make_private_fast`."""
    sample_rate = 1 / len(data_loader)
    noise_multiplier = get_noise_multiplier(
        target_epsilon=target_epsilon, target_delta=target_delta, sample_rate=sample_rate,
        epochs=epochs, accountant=engine.accountant.mechanism(),
        epsilon_tolerance=epsilon_tolerance,
    )
    return make_private_fast(
        engine, module=module, optimizer=optimizer, data_loader=data_loader,
        noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, **kwargs,
    )


Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def _as_arguments(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    # A tuple is the model's positional arguments, batch first (e.g. states and a mask).
    return inputs if isinstance(inputs, tuple) else (inputs,)


def fast_clipped_sum(
    *, model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: Inputs, targets: torch.Tensor, max_grad_norm: float,
    loss_reduction: str = "mean",
) -> dict[str, torch.Tensor]:
    """The book-keeping clipped sum of per-sample gradients for one batch, by parameter name
    (no noise, no averaging). ``inputs`` is the model's input, or a tuple of its positional
    arguments. Works on a copy; ``model`` is left untouched."""
    wrapped = BookkeepingModule(copy.deepcopy(model).train(), loss_reduction=loss_reduction)
    loss_fn(wrapped(*_as_arguments(inputs)), targets).backward()
    sums, _ = wrapped.clipped_sum(max_grad_norm=max_grad_norm)
    names = {id(p): name for name, p in wrapped._module.named_parameters()}
    return {names[id(p)]: grad.detach() for p, grad in sums.items()}


def reference_clipped_sum(
    *, model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: Inputs, targets: torch.Tensor, max_grad_norm: float,
    loss_reduction: str = "mean",
) -> dict[str, torch.Tensor]:
    """The reference for :func:`fast_clipped_sum`: Opacus' per-sample gradients
    (``GradSampleModule``, hooks mode), clipped one by one with Opacus' formula, summed."""
    reference = copy.deepcopy(model).train()
    module = GradSampleModule(reference, loss_reduction=loss_reduction)
    arguments = _as_arguments(inputs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message=".*non-full backward hook.*")
        loss_fn(module(*arguments), targets).backward()
    named = [(name, p) for name, p in reference.named_parameters() if p.requires_grad]
    per_sample = [p.grad_sample.reshape(len(arguments[0]), -1) for _, p in named]
    norms = torch.stack([g.norm(2, dim=1) for g in per_sample], dim=1).norm(2, dim=1)
    factor = (max_grad_norm / (norms + CLIP_EPSILON)).clamp(max=1.0)
    out = {name: torch.einsum("i,i...", factor, p.grad_sample).detach() for name, p in named}
    return out


# A parameter whose reference gradient is this small next to the whole gradient is zero up
# to rounding (e.g. attention's key bias: softmax ignores a shift shared by all keys, so its
# gradient is exactly zero in exact arithmetic); its error is measured against this share.
NEGLIGIBLE_SHARE = 1e-3


def max_relative_error(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """Worst over parameters of ``||got - expected|| / ||expected||`` (the whole tensor's
    L2 norm, so near-zero entries do not blow the ratio up). A parameter whose expected
    gradient is below ``NEGLIGIBLE_SHARE`` of the whole gradient's norm (zero up to
    rounding) is measured against that share instead of its own rounding noise."""
    if set(got) != set(expected):
        raise ValueError(f"different parameters: {sorted(got)} vs {sorted(expected)}")
    total = float(torch.sqrt(sum(ref.double().pow(2).sum() for ref in expected.values())))
    worst = 0.0
    for name, ref in expected.items():
        diff = float((got[name].double() - ref.double()).norm())
        scale = max(float(ref.double().norm()), NEGLIGIBLE_SHARE * total)
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst
