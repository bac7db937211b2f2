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

Person-level sampling (:class:`PersonRows`, :class:`PersonBatchSampler`): when rows belong
to persons (a patient's encounters), the unit sampled, clipped and accounted is the person.
Each step draws every *person* independently with the accountant's rate; a drawn person
brings at most ``max_rows`` of their rows (a fresh uniform subset per step, so every row is
used over the epochs), as one example of shape ``(max_rows, features)`` with a per-row
weight that is 0 for padding and ``1 / rows drawn`` otherwise. The training loss of that
example is the weighted sum of its rows' losses, i.e. the mean over the person's drawn
rows, so DP-SGD clips the person's whole gradient once: adding or removing a person (all
their rows) changes the sum of clipped gradients by at most the clipping norm, which is
what the accountant assumes of one example. Models that take one example per batch row (a
1-D CNN over windows, a GRU over sequences) use :class:`PersonExamples`: the same person
sampling with k = 1 example per person per step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import torch
from opacus.data_loader import DPDataLoader, dtype_safe, shape_safe, wrap_collate_with_empty
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

from ml_core.private_statistics import person_codes


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


# A person's draw key is ``salt * n_persons + person``: the salt (from the sampler's own,
# checkpointed generator) picks that step's subset of the person's rows, so a resumed run
# draws the same subsets without the dataset holding any random state; a plain index is a
# key with salt 0.
SALT_RANGE = 2**20


class PersonBatchSampler(PoissonBatchSampler):
    """:class:`PoissonBatchSampler` over persons, each drawn key carrying a salt that chooses
    the person's rows for the step (see :class:`PersonRows`)."""

    def draw(self) -> np.ndarray:
        persons = super().draw()
        salts = self.generator.integers(SALT_RANGE, size=len(persons))
        return salts * self.num_samples + persons.astype(np.int64)


class PersonIndex(Dataset):
    """Rows grouped by person for person-level DP-SGD: ``len`` is the number of persons, and
    a :class:`PersonBatchSampler` key names one person and the step's draw of at most
    ``max_rows`` of their rows (:meth:`rows_drawn`). Subclasses say what an item is."""

    poisson_sampler = PersonBatchSampler  # read by PoissonLoader

    def __init__(self, *, persons: np.ndarray, max_rows: int, seed: int) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        codes, _ = person_codes(persons)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        self.rows = np.split(order, bounds) if len(order) else []
        self.max_rows, self.seed = int(max_rows), int(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def rows_drawn(self, key: int) -> np.ndarray:
        """The person's rows for draw ``key``: all of them, or a uniform subset of ``k``."""
        salt, person = divmod(int(key), len(self.rows))
        rows = self.rows[person]
        if len(rows) <= self.max_rows:
            return rows
        generator = np.random.Generator(np.random.PCG64([self.seed, person, salt]))
        return np.sort(generator.choice(rows, self.max_rows, replace=False))

    @property
    def rows_per_person(self) -> np.ndarray:
        return np.array([len(rows) for rows in self.rows], dtype=np.int64)


class PersonRows(PersonIndex):
    """Training rows grouped by person: item ``key`` (a :class:`PersonBatchSampler` key)
    is ``(features (k, d), labels (k,), weights (k,))`` for at most ``k = max_rows`` of that
    person's rows; weights are ``row_weight / rows drawn`` and 0 on padding rows.

    ``persons`` holds one person code per row (any hashable values); ``row_weights`` (e.g.
    reweighing) default to 1.
    """

    def __init__(self, *, features: np.ndarray, labels: np.ndarray, persons: np.ndarray,
                 max_rows: int, seed: int, row_weights: np.ndarray | None = None) -> None:
        super().__init__(persons=persons, max_rows=max_rows, seed=seed)
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        self.row_weights = torch.from_numpy(
            np.ones(len(labels), dtype=np.float32) if row_weights is None
            else np.asarray(row_weights, dtype=np.float32))

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(self.rows_drawn(key))
        k, width = self.max_rows, self.features.shape[1]
        x, y, w = torch.zeros(k, width), torch.zeros(k), torch.zeros(k)
        x[:len(rows)], y[:len(rows)] = self.features[rows], self.labels[rows]
        w[:len(rows)] = self.row_weights[rows] / len(rows)
        return x, y, w


class PersonExamples(PersonIndex):
    """Training examples (windows, sequences: the first axis of each of ``tensors``) grouped
    by person, for models that take one example per batch row (a 1-D CNN, a GRU): item
    ``key`` is ONE of the person's examples, a fresh uniform draw every step. The person
    bound is then k = 1 example per step, whose gradient is clipped as the person's whole
    contribution: adding or removing a person (all their examples) changes a step by at most
    the clipping norm, as the accountant assumes. Every example is used over the epochs."""

    def __init__(self, *, tensors: tuple[torch.Tensor, ...], persons: np.ndarray,
                 seed: int) -> None:
        super().__init__(persons=persons, max_rows=1, seed=seed)
        if any(len(tensor) != len(persons) for tensor in tensors):
            raise ValueError("every tensor needs one example per person code")
        self.tensors = tuple(tensors)

    def _drawn(self, keys: list[int]) -> torch.Tensor:
        return torch.as_tensor(np.array([self.rows_drawn(key)[0] for key in keys],
                                        dtype=np.int64))

    def __getitem__(self, key: int) -> tuple[torch.Tensor, ...]:
        row = int(self.rows_drawn(key)[0])
        return tuple(tensor[row] for tensor in self.tensors)

    def __getitems__(self, keys: list[int]) -> tuple[torch.Tensor, ...]:
        """A whole batch with one indexing per tensor (as ``BatchedTensorDataset``)."""
        rows = self._drawn(keys)
        return tuple(tensor[rows] for tensor in self.tensors)


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
            # Person datasets ask for their person sampler; row datasets get the plain one.
            batch_sampler=getattr(dataset, "poisson_sampler", PoissonBatchSampler)(
                num_samples=len(dataset), sample_rate=sample_rate,  # type: ignore[arg-type]
                seed=seed),
            collate_fn=wrap_collate_with_empty(
                collate_fn=collate_fn or default_collate, batch_first=batch_first,
                rand_on_empty=rand_on_empty,
                sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
                dtypes=[dtype_safe(x) for x in first]),
            **kwargs)
