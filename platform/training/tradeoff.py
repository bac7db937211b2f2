"""The privacy–fairness–utility trade-off of one problem in one organisation, for reviewers.

Every succeeded run of the problem is one point: x is the epsilon it spent, y the largest
disparity between groups its fairness audit found, and its utility (the problem's primary
metric on the held-out test split) sets the point's size and colour. Runs trained without
differential privacy have no finite epsilon: they stand apart, at "∞". The problem page
draws the points with Chart.js (data through ``json_script``) and lists them in a table,
which is also what a reader without JavaScript gets.

Presentation only: every number is the run's own stored result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from django.urls import reverse

from accounts import scoping
from catalog.families import family_of
from training.models import TrainingRun
from training.result_display import metric_higher_is_better, metric_label
from verticals.registry import get_problem

MAX_POINTS = 300  # the most recent runs; older ones are counted, not drawn
RADIUS = (5.0, 14.0)  # smallest and largest point radius (pixels), worst to best utility


@dataclass(frozen=True)
class Point:
    run: int
    url: str
    model: int | None
    status: str  # the model version's status, in words
    private: bool
    epsilon: float | None  # None: trained without differential privacy (drawn at ∞)
    disparity: float | None  # the largest gap between groups; None: no audit to read
    where: str  # which attribute and measure gave it
    utility: float | None
    fairness_passed: bool | None
    share: float = 0.5  # utility scaled to 0 (worst here) .. 1 (best here)
    radius: float = sum(RADIUS) / 2


def _finite(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def largest_disparity(report: dict | None) -> tuple[float | None, str]:
    """The largest between-group difference in a fairness report, over its attributes and
    their ``*_difference`` measures (demographic parity and equalised odds differences for
    decisions; the gap in error or score for task-shaped reports), and where it is (on a tie,
    the first attribute and measure by name)."""
    largest, where = None, ""
    # Sorted: PostgreSQL's jsonb keeps no key order, and a tie must name the same place.
    for attribute, part in sorted((report or {}).items()):
        if not isinstance(part, dict):
            continue
        for key, raw in sorted((part.get("disparities") or {}).items()):
            value = _finite(raw)
            if key.endswith("_difference") and value is not None \
                    and (largest is None or value > largest):
                largest, where = value, f"{attribute}: {key.replace('_', ' ')}"
    return largest, where


def tradeoff(*, user, vertical: str, problem: str, primary_metric: str) -> dict:
    """Every succeeded run of the problem in the user's organisation, newest first, as
    chart-ready plain data (see the module's docstring)."""
    runs = scoping.for_user(TrainingRun.objects.filter(
        vertical=vertical, problem=problem, status=TrainingRun.Status.SUCCEEDED,
    ).select_related("model_version"), user)
    total = runs.count()
    points = [_point(run, primary_metric) for run in runs[:MAX_POINTS]]
    family = family_of(get_problem(vertical, problem).spec)
    higher = bool(metric_higher_is_better(primary_metric, family))
    points = _scaled(points, higher_is_better=higher)
    drawn = [p for p in points if p.disparity is not None]
    epsilons = [p.epsilon for p in drawn if p.epsilon is not None]
    # The "∞" column sits a clear step right of the largest finite epsilon.
    largest = max(epsilons, default=0.0)
    infinity_x = round(max(largest * 1.3, largest + 1.0), 3)
    return {
        "metric": primary_metric,
        "metric_label": metric_label(primary_metric, family),
        "higher_is_better": higher,
        "points": [asdict(p) for p in points],
        "drawn": len(drawn),
        "private": sum(1 for p in drawn if p.private),
        "nonprivate": sum(1 for p in drawn if not p.private),
        "undrawn": [p.run for p in points if p.disparity is None],
        "total": total,
        "omitted": max(0, total - MAX_POINTS),
        "infinity_x": infinity_x,
    }


def _point(run: TrainingRun, primary_metric: str) -> Point:
    privacy = run.privacy or {}
    private = bool(privacy.get("enabled"))
    disparity, where = largest_disparity(run.fairness)
    model = getattr(run, "model_version", None)
    passed = (run.result or {}).get("fairness_passed")
    if passed is None and run.fairness:
        passed = all(bool(part.get("passed", True)) for part in run.fairness.values()
                     if isinstance(part, dict))
    return Point(
        run=run.pk, url=reverse("run_detail", args=[run.pk]),
        model=model.pk if model else None,
        status=model.get_status_display() if model else "no model",
        private=private,
        epsilon=_finite(privacy.get("epsilon", run.epsilon_spent)) if private else None,
        disparity=disparity, where=where,
        utility=_finite((run.metrics or {}).get(primary_metric)),
        fairness_passed=None if passed is None else bool(passed),
    )


def _scaled(points: list[Point], *, higher_is_better: bool) -> list[Point]:
    """Each point's utility as a share of this chart's range (best = 1) and its radius."""
    values = [p.utility for p in points if p.utility is not None]
    low, high = min(values, default=0.0), max(values, default=0.0)
    scaled = []
    for p in points:
        if p.utility is None or high == low:
            share = 0.5
        else:
            share = (p.utility - low) / (high - low)
            share = share if higher_is_better else 1 - share
        radius = round(RADIUS[0] + share * (RADIUS[1] - RADIUS[0]), 2)
        scaled.append(Point(**{**asdict(p), "share": round(share, 4), "radius": radius}))
    return scaled
