"""Interleaved, warmed-up timing: the variants take turns, so a slow patch of a shared
machine hits all of them alike, and ratios are taken within each round."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def interleaved(
    variants: Mapping[str, Callable[[], object]], *, rounds: int, inner: Mapping[str, int] | int,
    warmup: int = 2, sync: Callable[[], None] = lambda: None,
    rounds_for: Mapping[str, int] | None = None, alternate: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one figure per round (``inner`` calls per round).

    ``rounds_for`` lets slow variants sit out the later rounds (they take part in the first
    ``rounds_for[name]`` ones). With ``alternate`` every other round runs the variants in
    reverse order (A B, B A, ...), so a slow spell that starts or ends within a round
    does not always land on the same variant. ``clock`` is the timer (see
    :func:`step_clock`).
    """
    counts = inner if isinstance(inner, Mapping) else {name: inner for name in variants}
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for round_index in range(rounds):
        turn = order[::-1] if alternate and round_index % 2 else order
        for name, fn in turn:
            if rounds_for is not None and round_index >= rounds_for.get(name, rounds):
                continue
            n = counts[name]
            sync()
            start = clock()
            for _ in range(n):
                fn()
            sync()
            times[name].append((clock() - start) / n)
    return times


def step_clock(device: str, threads: int) -> Callable[[], float]:
    """The timer for step ratios: on the CPU with one torch thread, this thread's CPU time
    (every op of a step runs on it, autograd's backward included), which a busy shared
    machine does not stretch by the time other jobs hold the cores; otherwise wall time."""
    if device.startswith("cuda") or threads != 1:
        return time.perf_counter
    return time.thread_time


def round_ratio(times: Mapping[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of numerator / denominator measured in the same round."""
    pairs = zip(times[numerator], times[denominator], strict=False)
    return float(statistics.median(a / b for a, b in pairs))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def repeated(
    fn: Callable[[], object], *, repeats: int, warmup: bool = True,
    sync: Callable[[], None] = lambda: None,
) -> tuple[list[float], object]:
    """Seconds of each of ``repeats`` calls of ``fn`` (after one warm-up call unless
    ``warmup`` is False), and the last call's result."""
    if warmup:
        fn()
    out, result = [], None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        out.append(time.perf_counter() - start)
    return out, result


def loglog_slope(sizes: list[float], seconds: list[float]) -> float:
    """Least-squares slope of log(time) against log(size): 1.0 is linear scaling."""
    if len(sizes) < 2 or any(s <= 0 for s in seconds):
        return math.nan
    slope, _ = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return float(slope)


@contextlib.contextmanager
def torch_threads(count: int | None, device: str = "cpu") -> Iterator[int]:
    """Run the block with ``count`` torch CPU threads (restored afterwards); None or a
    CUDA device leaves the setting alone. Ratios of single-threaded steps measure the
    work itself: on a shared machine two threads wait on each other's slowest core."""
    import torch

    before = torch.get_num_threads()
    if count is None or device.startswith("cuda"):
        yield before
        return
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)
