"""DP-SGD step cost of every registered model family, on its own training plan.

For each family, :func:`bench.family_plans.train_privately` trains one of its problems on
sample data and hands back the plan its training path built (model, data, batch loss).
Both variants are that plan started by the one training loop
(:func:`ml_core.training_loop.start`): privately (the product's private path, book-keeping
clipping where every trainable layer has it, Opacus' hooks otherwise: ``details`` say
which) and non-privately; same trainable layers, same batch of the family's own batch
size. A "step" is zero_grad + batch loss + backward + optimizer.step. Timing as in
:mod:`bench.groups.dp_mlp`: one torch thread, the two sides alternating in rounds of a few
steps, each timed by the thread's CPU time (:func:`bench.timing.step_clock`), median of the
within-round ratios.
"""

from __future__ import annotations

import dataclasses
import warnings

from bench.family_plans import batch_of, train_privately
from bench.registry import Result, Settings, Target
from bench.timing import interleaved, median, round_ratio, step_clock, synchronizer, torch_threads

# Every registered model family (tests/test_privacy_rules.py checks this list is complete).
FAMILIES = ("tabular_mlp", "text_encoder", "forecaster", "recommender", "knowledge_tracing",
            "next_exercise", "sequence_regressor", "image_classifier")
NAMES = tuple(f"dp_step_ratio_{family}" for family in FAMILIES)
DEVICES = ("cpu",)
SINGLE_THREAD = 1
# Sample rows each family trains on to build its plan (the text family encodes its rows
# with the frozen encoder first: fewer); sequence regression needs enough units to split.
# The recommender's private item vocabulary needs a few hundred users (issue 14).
ROWS = {"text_encoder": 120, "sequence_regressor": 600, "image_classifier": 120,
        "recommender": 6000}
DEFAULT_ROWS = 600


def sizes(settings: Settings) -> dict:
    # Steps of these models take 0.3 to 5 ms: many short rounds (``inner`` steps each) keep
    # a busy spell of a shared machine from deciding a ratio.
    if settings.tiny:
        return {"rounds": 2, "inner": 1}
    if settings.quick:
        return {"rounds": 40, "inner": 3}
    return {"rounds": 100, "inner": 5}


def _stepper(plan, started, batch):  # noqa: ANN001, ANN202
    optimizer = started.optimizer

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = plan.batch_loss(started.model, batch)
        loss.backward()
        optimizer.step()

    return step


def _family(family: str, *, settings: Settings, rounds: int, inner: int) -> Result:
    from ml_core import training_loop

    seen = train_privately(family, rows=ROWS.get(family, DEFAULT_ROWS), epochs=1)
    plan = seen.plan
    private = training_loop.start(plan)
    plain = training_loop.start(dataclasses.replace(plan, privacy=None))
    size = max(1, min(plan.batch_size, len(plan.dataset)))
    batch = batch_of(plan, list(range(size)))
    with torch_threads(SINGLE_THREAD, settings.device) as threads:
        times = interleaved({"plain": _stepper(plan, plain, batch),
                             "private": _stepper(plan, private, batch)},
                            rounds=rounds, inner=inner, warmup=2,
                            sync=synchronizer(settings.device),
                            clock=step_clock(settings.device, threads))
    ms = {kind: median(values) * 1e3 for kind, values in times.items()}
    clipping = private.wrapped.clipping
    return Result(
        f"dp_step_ratio_{family}{settings.suffix}", round_ratio(times, "private", "plain"), "x",
        f"non-private step of the same plan and batch (median {ms['plain']:.3g} ms)",
        Target(high=1.5),
        details={"problem": seen.problem, "batch": size, "rounds": rounds, "inner": inner,
                 "median_ms": ms, "clock": "thread CPU time" if threads == 1 else "wall",
                 "threads": threads, "clipping": clipping, "fixes": list(private.fixes)})


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message=".*backward hook.*")
        return [_family(family, settings=settings, rounds=s["rounds"], inner=s["inner"])
                for family in FAMILIES]
