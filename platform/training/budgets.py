"""Work budgets: how much one run may ask a worker to do, checked before it is queued.

Options in range can still multiply into a run no worker survives (500 epochs of batch 1 on
a million rows). A run's plan (its optimiser steps, rows times epochs, and the memory it
plans for) is estimated from the dataset version's profile and the run's options, and
compared with the deployment's budgets (settings ``TESSERA_MAX_RUN_STEPS``,
``TESSERA_MAX_RUN_ROW_EPOCHS``, ``TESSERA_MAX_RUN_MEMORY_MB``; docs/operations.md). A run
over any of them is refused with the figure and the setting that would allow it.
"""

from __future__ import annotations

import dataclasses
import math

from django.conf import settings

from ml_core.spec import TrainConfig

# Bytes a table cell costs once read, encoded and split (the frame, the float tensors of the
# encoded features and their split copies): a generous figure, so the estimate errs high.
BYTES_PER_CELL = 64
# Bytes per model parameter during private training: the weights, their gradient, the
# optimiser's state and a per-sample gradient for every row of a batch (Opacus' fallback).
BYTES_PER_PARAMETER = 16
# Encoded width per mapped column: one-hot categories widen a column.
ENCODED_WIDTH_PER_COLUMN = 8


class WorkBudgetExceeded(ValueError):
    """The run's plan exceeds a budget of this deployment; the message gives the figure."""


@dataclasses.dataclass(frozen=True)
class WorkPlan:
    """What a run would ask of its worker, estimated before it is queued."""

    rows: int
    columns: int
    epochs: int
    steps_per_epoch: int
    total_steps: int  # both trainings (the model and its non-private twin)
    row_epochs: int
    planned_memory_mb: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class WorkBudgets:
    max_steps: int
    max_row_epochs: int
    max_memory_mb: float

    @classmethod
    def from_settings(cls) -> WorkBudgets:
        return cls(max_steps=int(settings.TESSERA_MAX_RUN_STEPS),
                   max_row_epochs=int(settings.TESSERA_MAX_RUN_ROW_EPOCHS),
                   max_memory_mb=float(settings.TESSERA_MAX_RUN_MEMORY_MB))


def plan_work(*, rows: int, columns: int, train: TrainConfig, private: bool) -> WorkPlan:
    """The plan of a run on ``rows`` x ``columns`` with ``train``'s options."""
    # Rounded first: 1000 * (1 - 0.2 - 0.2) is 600.0000000000001 in floating point.
    train_rows = max(1, math.ceil(round(rows * (1 - train.test_fraction - train.val_fraction), 6)))
    steps_per_epoch = max(1, math.ceil(train_rows / train.batch_size))
    trainings = 2 if private else 1  # a private model is trained beside its non-private twin
    width = max(1, columns) * ENCODED_WIDTH_PER_COLUMN
    layers = [width, *train.hidden_sizes, 1]
    parameters = sum((a + 1) * b for a, b in zip(layers, layers[1:], strict=False))
    data_bytes = rows * max(1, columns) * BYTES_PER_CELL
    model_bytes = parameters * BYTES_PER_PARAMETER * (1 + min(train.batch_size, train_rows))
    return WorkPlan(
        rows=rows, columns=columns, epochs=train.epochs, steps_per_epoch=steps_per_epoch,
        total_steps=trainings * train.epochs * steps_per_epoch,
        row_epochs=trainings * train.epochs * train_rows,
        planned_memory_mb=round((data_bytes + model_bytes) / 2**20, 1),
    )


def check_work(plan: WorkPlan, budgets: WorkBudgets | None = None) -> None:
    """WorkBudgetExceeded when ``plan`` is over any of the deployment's budgets."""
    budgets = budgets or WorkBudgets.from_settings()
    over = []
    if plan.total_steps > budgets.max_steps:
        over.append(f"{plan.total_steps:,} optimiser steps ({plan.epochs} epochs x "
                    f"{plan.steps_per_epoch:,} batches, for the model and its twin) exceed "
                    f"the limit of {budgets.max_steps:,} (TESSERA_MAX_RUN_STEPS)")
    if plan.row_epochs > budgets.max_row_epochs:
        over.append(f"{plan.row_epochs:,} rows x epochs exceed the limit of "
                    f"{budgets.max_row_epochs:,} (TESSERA_MAX_RUN_ROW_EPOCHS)")
    if plan.planned_memory_mb > budgets.max_memory_mb:
        over.append(f"about {plan.planned_memory_mb:,.0f} MB of planned memory exceeds the "
                    f"limit of {budgets.max_memory_mb:,.0f} MB (TESSERA_MAX_RUN_MEMORY_MB)")
    if over:
        raise WorkBudgetExceeded(
            "this run is too large for this deployment: " + "; ".join(over)
            + ". Use fewer epochs, a larger batch_size or fewer rows, or ask an operator "
            "to raise the limit.")
