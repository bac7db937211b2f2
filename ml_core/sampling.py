"""Poisson sampling for DP-SGD at a cost proportional to the batch, not to the data.

Opacus' :class:`~opacus.utils.uniform_sampler.UniformWithReplacementSampler` draws one
uniform number per training row for every step, so an epoch of ``n / B`` steps costs
``O(n^2 / B)``: at 256k rows the sampler outweighs the training itself. Poisson sampling
(each row in the batch independently with probability ``q``) is the same distribution
as: draw the batch size ``k ~ Binomial(n, q)``, then a uniform subset of ``k`` distinct
rows. NumPy's ``Generator.binomial`` is O(1) and ``Generator.choice(n, k, replace=False,
shuffle=False)`` uses Floyd's algorithm (O(k)) whenever ``n <= 10,000`` or ``k <= n / 20``;
otherwise a partial shuffle, O(n) per step, but then ``q > 1/20`` and an epoch has fewer
than 20 steps, so an epoch stays O(n).

:class:`PoissonLoader` is Opacus' :class:`~opacus.data_loader.DPDataLoader` with this
sampler: the same sample rate, the same number of steps per epoch (``int(1 / q)``), the
same handling of empty batches (Opacus' collate wrapper), so the accountant, which only
sees the sample rate and the steps, gives the same epsilon. Its generator is its own
(NumPy PCG64, seeded from the original loader's torch generator), and its state travels
as a tensor (:meth:`PoissonBatchSampler.get_state`) so checkpoints restore it exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import torch
from opacus.data_loader import DPDataLoader, dtype_safe, shape_safe, wrap_collate_with_empty
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate


class PoissonBatchSampler(Sampler[list[int]]):
    """``steps`` batches (default ``int(1 / sample_rate)``, as Opacus), each holding every
    row independently with probability ``sample_rate``; indices sorted, as Opacus'."""

    def __init__(self, *, num_samples: int, sample_rate: float, seed: int,
                 steps: int | None = None) -> None:
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.num_samples, self.sample_rate = int(num_samples), float(sample_rate)
        self.steps = int(1 / self.sample_rate) if steps is None else int(steps)
        self.generator = np.random.Generator(np.random.PCG64(seed))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            yield self.draw().tolist()

    def draw(self) -> np.ndarray:
        """One batch's row indices, ascending."""
        size = int(self.generator.binomial(self.num_samples, self.sample_rate))
        rows = self.generator.choice(self.num_samples, size, replace=False, shuffle=False)
        rows.sort()
        return rows

    def get_state(self) -> torch.Tensor:
        """The generator's state as a byte tensor (like ``torch.Generator.get_state``), so
        a checkpoint holding it loads with ``torch.load(weights_only=True)``."""
        text = json.dumps(self.generator.bit_generator.state)
        return torch.tensor(list(text.encode("ascii")), dtype=torch.uint8)

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.bit_generator.state = json.loads(bytes(state.tolist()).decode("ascii"))


class PoissonLoader(DPDataLoader):
    """Opacus' ``DPDataLoader`` (same arguments, same collate wrapper for empty batches)
    drawing its batches with :class:`PoissonBatchSampler`. ``generator`` (a torch
    generator, or torch's global one when None) only seeds the sampler's own generator."""

    def __init__(self, dataset: Dataset, *, sample_rate: float, collate_fn=None,
                 drop_last: bool = False, generator: torch.Generator | None = None,
                 distributed: bool = False, batch_first: bool = True,
                 rand_on_empty: bool = False, **kwargs) -> None:
        if distributed:
            raise ValueError("PoissonLoader does not support distributed training")
        self.sample_rate, self.distributed = sample_rate, False
        seed = int(torch.randint(2**63 - 1, (), generator=generator))
        first = dataset[0]
        DataLoader.__init__(
            self, dataset=dataset,
            batch_sampler=PoissonBatchSampler(num_samples=len(dataset),  # type: ignore[arg-type]
                                              sample_rate=sample_rate, seed=seed),
            collate_fn=wrap_collate_with_empty(
                collate_fn=collate_fn or default_collate, batch_first=batch_first,
                rand_on_empty=rand_on_empty,
                sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
                dtypes=[dtype_safe(x) for x in first]),
            **kwargs)
