"""The results page draws a run's charts by the kind its family declared, and runs stored
before charts carried a kind get it from the 0004 migration (the page then shows what it
showed before)."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.apps import apps

from ml_core.families import all_families
from training.models import TrainingRun
from training.result_display import RENDERERS, task_results

pytestmark = pytest.mark.django_db

migration = import_module("training.migrations.0004_chart_kinds")

# Charts as families stored them before they declared a kind -> (kind, page heading).
LEGACY = {
    "binary": ({"pr_curve": {"recall": [0.0, 1.0], "precision": [1.0, 0.5], "chance": 0.5},
                "confusion_matrix": {"labels": [0, 1], "matrix": [[3, 1], [1, 3]],
                                     "threshold": 0.4}},
               "precision_recall", "Precision-recall curve and confusion matrix"),
    "text": ({"confusion": {"labels": ["a", "b"], "matrix": [[2, 0], [1, 2]]}},
             "confusion_matrix", "Confusion matrices and F1 per class"),
    "forecast": ({"forecast": [{"series": "s1", "dates": ["w1", "w2"], "actual": [1, 2],
                                "forecast": [1, 2], "baseline": [1, 1]}],
                  "baseline_name": "seasonal_naive"},
                 "forecast_vs_actual", "Forecast vs actual, with the baseline"),
    "ranking": ({"top_k": [{"user": "u1", "items": ["i1"], "held_out": ["i1"]}],
                 "exposure": []}, "top_k", "Top-k lists and exposure by popularity"),
    "next": ({"recommendations": [], "zpd": {"low": 0.5, "high": 0.85}}, "next_skill",
             "Recommended next skills, with predicted success and the zone"),
    "mastery": ({"mastery": []}, "mastery", "Mastery curves per student"),
    "rul": ({"rul": [], "rul_cap": 125, "baseline_name": "life_curve"}, "rul_curve",
            "Predicted vs true remaining useful life (capped at 125 cycles)"),
}


def test_every_declared_chart_kind_has_a_renderer() -> None:
    for family in all_families():
        for kind in family.chart_kinds:
            assert kind in RENDERERS, (family.name, kind)


@pytest.mark.parametrize("case", sorted(LEGACY))
def test_the_migration_gives_old_results_their_kind_and_the_page_is_unchanged(
        case, succeeded_run) -> None:
    charts, kind, heading = LEGACY[case]
    run = succeeded_run
    run.result = {**run.result, "charts": charts}
    run.save(update_fields=["result"])
    assert task_results(run).heading == ""  # no kind: the page guesses nothing

    migration.stamp_kinds(apps, None)

    run = TrainingRun.objects.get(pk=run.pk)
    assert run.result["charts"] == {"kind": kind, **charts}
    assert task_results(run).heading == heading


def test_a_kind_no_renderer_knows_shows_no_charts(succeeded_run) -> None:
    run = succeeded_run
    run.result = {**run.result, "charts": {"kind": "hologram", "confusion": {}}}
    run.save(update_fields=["result"])
    shown = task_results(run)
    assert shown.heading == "" and not shown.figures
    migration.stamp_kinds(apps, None)  # a stored kind is left as it is
    assert TrainingRun.objects.get(pk=run.pk).result["charts"]["kind"] == "hologram"
