"""Each registered model family's own training plan, as its training path builds it.

A family's problem is trained privately once through ``ml_core.pipeline.run_training`` on
its vertical's sample data, and the one training loop's
:func:`ml_core.training_loop.start` is observed: what comes back is exactly the
:class:`~ml_core.training_loop.LoopPlan` (data, batch loss, model) and the wrapped module,
optimiser and loader that family trained with. The DP step benchmarks
(:mod:`bench.groups.dp_families`) and the privacy-rule tests use it, so both measure and
check the families' real training, not a re-creation of it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

from bench.platform_env import ROOT


@dataclasses.dataclass(frozen=True)
class FamilyTraining:
    """One family's private training stage as the loop saw it."""

    family: str
    problem: str  # vertical/problem whose sample data it trained on
    plan: object  # ml_core.training_loop.LoopPlan
    started: object  # ml_core.training_loop.Started, after the training ran
    report: dict  # the privacy report once the training finished


def _django_ready() -> None:
    from django.apps import apps

    if apps.ready:
        return
    for path in (str(ROOT), str(ROOT / "platform")):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()


def families_with_problems() -> dict[str, tuple]:
    """model_family -> (vertical, problem): the first registered problem of each family."""
    _django_ready()
    from verticals.registry import all_problems

    chosen: dict[str, tuple] = {}
    for vertical, problem in all_problems():
        chosen.setdefault(problem.spec.model_family, (vertical, problem))
    return chosen


def train_privately(family: str, *, rows: int, epochs: int, seed: int = 7) -> FamilyTraining:
    """Train ``family``'s first problem privately (``rows`` sample rows, ``epochs``) and
    return its private training stage (the first private one the loop started)."""
    from ml_core import training_loop
    from ml_core.pipeline import run_training

    vertical, problem = families_with_problems()[family]
    spec = problem.spec
    captured: list = []
    real_start = training_loop.start

    def observed_start(plan):  # noqa: ANN001, ANN202 - the loop's own signature
        started = real_start(plan)
        if plan.private:
            captured.append((plan, started))
        return started

    with mock.patch.object(training_loop, "start", observed_start), \
            tempfile.TemporaryDirectory() as tmp:
        run_training(
            frame=problem.sample_data(rows, seed), mapping=problem.sample_mapping, spec=spec,
            privacy=dataclasses.replace(spec.privacy, enabled=True),
            train=dataclasses.replace(spec.train, epochs=epochs), artifact_dir=Path(tmp),
        )
    if not captured:
        raise RuntimeError(f"{family}: no private training went through the training loop")
    plan, started = captured[0]
    return FamilyTraining(family=family, problem=f"{vertical.key}/{problem.key}", plan=plan,
                          started=started, report=started.privacy())


def batch_of(plan, rows: list[int]) -> tuple:  # noqa: ANN001 - a LoopPlan
    """The batch of ``rows`` of the plan's training data, collated as the loop does."""
    from torch.utils.data import DataLoader

    loader = DataLoader(plan.dataset, batch_size=len(rows), sampler=rows,
                        collate_fn=plan.collate_fn)
    return next(iter(loader))
