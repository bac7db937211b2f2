"""What a finished run's page shows for its task: the metrics beside the baseline(s), the
charts that task's users expect, small tables (top-k lists, recommendations) and the
plain-language notes.

Drawn from the run's stored result (``TrainingRun.result["charts"]``, written by the task
family in ``ml_core``) with the one chart module, :mod:`training.charts`. Presentation only:
every number comes from the stored result. Which drawing applies is the charts' ``kind``
(``charts["kind"]``, one of the kinds the family declares), not the task type, since two
problems may share a task type (recommendation and next exercise are both rankings) but
not their charts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.urls import reverse

from catalog.families import family_of
from ml_core.families import ModelFamily
from ml_core.metrics import higher_is_better
from training import charts
from verticals.registry import RegistryError, get_problem

METRIC_LABELS = {
    "roc_auc": "ROC AUC", "pr_auc": "PR AUC", "accuracy": "Accuracy", "f1": "F1",
    "brier": "Brier score", "ks": "KS statistic", "macro_f1": "Macro F1",
    "recall_at_90_precision": "Recall at 90 % precision",
    "mae": "MAE", "rmse": "RMSE", "wape": "WAPE", "mase": "MASE",
    "nasa_score": "NASA score", "ndcg@10": "NDCG@10", "recall@10": "Recall@10",
    "hit_rate@10": "Hit rate@10", "zpd_share": "Share in the zone of proximal development",
    "mean_distance_to_target": "Mean distance to 0.7 predicted success",
    "observed_success": "Observed success on the chosen skill",
    "observed_students": "Students observed on the chosen skill",
    "skill_coverage": "Share of skills recommended",
}
TASK_LABELS = {
    "binary_classification": "Binary classification",
    "text_classification": "Text classification",
    "forecasting": "Forecasting",
    "ranking": "Ranking",
    "sequence_prediction": "Sequence prediction (knowledge tracing)",
    "sequence_regression": "Sequence regression (remaining useful life)",
    "image_classification": "Image classification",
}
MAX_SERIES_CHARTS = 4
MAX_STUDENT_CHARTS = 3
MAX_SKILL_LINES = 4
MAX_UNIT_CHARTS = 4
MAX_LIST_ROWS = 10
MAX_SPLIT_FACT = 40  # characters
WIDE = charts.Frame(width=560, height=260)


@dataclass(frozen=True)
class Figure:
    markup: str  # escaped by training.charts
    caption: str = ""


@dataclass(frozen=True)
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Picture:
    """One stored picture of a run (training.pictures): the run's picture view serves it."""

    url: str
    alt: str
    lines: list[str]


@dataclass(frozen=True)
class Gallery:
    """Pictures under one caption; ``css_class`` sizes them (thumbnails, large overlays)."""

    caption: str
    note: str
    pictures: list[Picture]
    css_class: str = "thumbnails"


@dataclass(frozen=True)
class TaskResults:
    task_type: str
    task_label: str
    heading: str  # what the charts show, in the task's words
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    galleries: list[Gallery] = field(default_factory=list)


def metric_higher_is_better(name: str, family: ModelFamily | None = None) -> bool | None:
    """Whether a larger value of the metric is better, as ``family`` declares it (ml_core's
    list for a metric it does not declare); None for a count with no better direction."""
    declared = family.metric(name) if family is not None else None
    return declared.higher_is_better if declared is not None else higher_is_better(name)


def metric_label(name: str, family: ModelFamily | None = None) -> str:
    label = METRIC_LABELS.get(name, name.replace("_", " "))
    higher = metric_higher_is_better(name, family)
    if higher is None:
        return label
    return f"{label} ({'higher' if higher else 'lower'} is better)"


def run_family(run) -> ModelFamily | None:
    """The family of ``run``'s problem; None once the problem is no longer registered."""
    try:
        return family_of(get_problem(run.vertical, run.problem).spec)
    except RegistryError:
        return None


def _other_references(result: dict) -> dict[str, dict]:
    """Metrics of every reference but the chosen baseline: the family's other baselines,
    then the stronger non-private references (gradient-boosted trees), by name."""
    baseline = result.get("baseline") or {}
    others = dict(baseline.get("baselines") or {})
    others.update({name: reference.get("metrics") or {}
                   for name, reference in (result.get("references") or {}).items()})
    return others


def baseline_names(result: dict) -> list[str]:
    """The baselines beside the model: the chosen one first, then any others reported
    (other baselines, then references such as gradient-boosted trees)."""
    baseline = result.get("baseline") or {}
    chosen = baseline.get("name")
    others = [n for n in _other_references(result) if n != chosen]
    return ([chosen] if chosen else []) + others


def metric_rows(run) -> list[dict]:
    """One row per metric: this model, each baseline, the non-private twin; ``better`` says
    whether the model beats the chosen baseline on it (None when it cannot be said)."""
    result = run.result or {}
    baseline = result.get("baseline") or {}
    chosen = baseline.get("metrics") or {}
    others = _other_references(result)
    twin = result.get("nonprivate_metrics") or {}
    model = run.metrics or {}
    names = list(model) + [n for n in list(chosen) + list(twin) if n not in model]
    family = run_family(run)
    rows = []
    for name in names:
        value, reference = model.get(name), chosen.get(name)
        higher = metric_higher_is_better(name, family)
        better = None
        if higher is not None and isinstance(value, int | float) \
                and isinstance(reference, int | float):
            better = value > reference if higher else value < reference
        rows.append({
            "name": name, "label": metric_label(name, family), "model": value,
            "baseline": reference,
            "others": [(others.get(other) or {}).get(name)
                       for other in baseline_names(result)[1:]],
            "twin": twin.get(name), "better": better,
        })
    return rows


def task_results(run) -> TaskResults:
    """The charts, tables and notes for a finished run's page."""
    # The builders label charts with the model's stored metrics (never a curve's last point).
    result = {**(run.result or {}), "metrics": run.metrics or {}}
    task_type = str(result.get("task_type") or "binary_classification")
    stored = result.get("charts") or {}
    notes = [str(note) for note in result.get("notes") or []]
    label = TASK_LABELS.get(task_type, task_type.replace("_", " "))
    # The family stamps its chart kind on the result (ModelFamily.chart_kinds); a kind no
    # renderer knows shows no charts rather than guessing from the keys.
    builder = RENDERERS.get(str(stored.get("kind") or ""))
    if builder is None:
        return TaskResults(task_type=task_type, task_label=label, heading="", notes=notes)
    heading, figures, tables = builder(stored, result)
    galleries = GALLERIES.get(str(stored.get("kind")), _no_pictures)(
        stored, lambda name: reverse("run_picture", args=[run.pk, name]))
    return TaskResults(task_type=task_type, task_label=label, heading=heading,
                       figures=figures, tables=tables, notes=notes, galleries=galleries)


# --- one builder per kind of stored chart data ------------------------------------------
# Each returns (heading, figures, tables).

Shown = tuple[str, list[Figure], list[Table]]


def _binary(stored: dict, result: dict) -> Shown:
    figures = []
    curve = stored.get("pr_curve")
    if curve and curve.get("recall"):
        points = list(zip(curve["recall"], curve["precision"], strict=False))
        chance = curve.get("chance")
        series = [("model", points)]
        pr_auc = (result.get("metrics") or {}).get("pr_auc")
        legend = {"model": "model" + (f" (PR AUC {pr_auc:.3f})"
                                      if isinstance(pr_auc, int | float) else "")}
        if chance is not None:
            series.append(("chance (positive rate)", [(0.0, chance), (1.0, chance)]))
            legend["chance (positive rate)"] = f"chance (positive rate) {chance:.3f}"
        figures.append(Figure(charts.line_chart(
            title="Precision-recall curve on the test split", series=series,
            x_label="recall", y_label="precision", dashed=("chance (positive rate)",),
            frame=WIDE, legend=legend,
        ), caption="Precision at each recall as the decision threshold moves; the dashed line "
                   "is what guessing achieves (the share of positives)."))
    matrix = stored.get("confusion_matrix")
    if matrix:
        threshold = matrix.get("threshold")
        title = "Confusion matrix on the test split" + (
            f" at threshold {threshold:.3f} (chosen on validation)"
            if isinstance(threshold, int | float) else "")
        figures.append(Figure(charts.confusion_matrix_table(
            title=title, labels=matrix.get("labels") or [0, 1],
            matrix=matrix.get("matrix") or [])))
    return "Precision-recall curve and confusion matrix", figures, []


def _text(stored: dict, result: dict) -> Shown:
    model = stored["confusion"]
    figures = [Figure(charts.confusion_matrix_table(
        title="Confusion matrix of this model on the test split",
        labels=model.get("labels") or [], matrix=model.get("matrix") or []))]
    base = stored.get("baseline_confusion")
    if base:
        name = (result.get("baseline") or {}).get("name") or "baseline"
        figures.append(Figure(charts.confusion_matrix_table(
            title=f"Confusion matrix of the baseline ({name})",
            labels=base.get("labels") or [], matrix=base.get("matrix") or [])))
    per_class = stored.get("per_class_f1")
    if per_class and per_class.get("labels"):
        figures.append(Figure(charts.grouped_bar_chart(
            title="F1 per class", categories=[str(c) for c in per_class["labels"]],
            series=[("this model", per_class.get("model") or []),
                    ("baseline", per_class.get("baseline") or [])],
            y_label="F1", x_label="class", y_max=1.0, frame=WIDE,
        )))
    return "Confusion matrices and F1 per class", figures, []


def _images(stored: dict, result: dict) -> Shown:
    """The text family's drawing (confusion matrices), with per-class precision and recall
    (the rare defect class a model misses shows as a short bar)."""
    _, figures, tables = _text(stored, result)
    per_class = stored.get("per_class") or {}
    if per_class.get("labels"):
        labels = [str(c) for c in per_class["labels"]]
        figures.append(Figure(charts.grouped_bar_chart(
            title="Precision and recall per class on the test split", categories=labels,
            series=[("precision", per_class.get("precision") or []),
                    ("recall", per_class.get("recall") or [])],
            y_label="share", x_label="class", y_max=1.0, frame=WIDE,
        ), caption="Recall is the share of a class's images the model finds; precision the "
                   "share of its calls of that class that are right."))
        tables.append(Table(
            caption="Per class on the test split", headers=["Class", "Images", "Precision",
                                                            "Recall"],
            rows=[[label, str(support), _number(precision), _number(recall)]
                  for label, support, precision, recall in zip(
                      labels, per_class.get("support") or [], per_class.get("precision") or [],
                      per_class.get("recall") or [], strict=False)]))
    return "Confusion matrices, precision and recall per class", figures, tables


def _stored_name(entry: dict, key: str) -> str | None:
    value = entry.get(key)
    return value.get("picture") if isinstance(value, dict) else None


def _image_galleries(stored: dict, url: Callable[[str], str]) -> list[Gallery]:
    galleries = []
    mistakes = [Picture(
        url=url(name), alt=f"{entry.get('image')}: {entry.get('true')} taken for "
                       f"{entry.get('predicted')}",
        lines=[str(entry.get("image")), f"true: {entry.get('true')}",
               f"predicted: {entry.get('predicted')} ({_number(entry.get('confidence'))})"])
        for entry in stored.get("confident_mistakes") or []
        if (name := _stored_name(entry, "thumbnail"))]
    if stored.get("confident_mistakes") is not None:
        galleries.append(Gallery(
            caption="Most confident mistakes on the test split", pictures=mistakes,
            note="The wrong calls the model was surest of, surest first, with its "
                 "probability. Test images: for the curator's eyes, not part of the "
                 "released model." if mistakes else "No mistakes on the test split."))
    saliency = [Picture(
        url=url(name), alt=f"Saliency map of {entry.get('image')} ({entry.get('true')}, "
                       f"predicted {entry.get('predicted')})",
        lines=[str(entry.get("image")), f"true: {entry.get('true')}",
               f"predicted: {entry.get('predicted')}"])
        for entry in stored.get("saliency") or [] if (name := _stored_name(entry, "overlay"))]
    if saliency:
        galleries.append(Gallery(
            caption="Where the model looked (Grad-CAM)", pictures=saliency,
            css_class="thumbnails large",
            note="Red marks the regions that raised the predicted class's score most, one "
                 "test image per class. Test images: for the curator's eyes."))
    return galleries


def _no_pictures(stored: dict, url: Callable[[str], str]) -> list[Gallery]:
    return []


def _forecast(stored: dict, result: dict) -> Shown:
    baseline = str(stored.get("baseline_name") or "baseline").replace("_", " ")
    figures = []
    for chart in (stored.get("forecast") or [])[:MAX_SERIES_CHARTS]:
        dates = chart.get("dates") or []
        steps = range(len(dates))

        def line(values, steps=steps):
            return [(float(i), v) for i, v in zip(steps, values or [], strict=False)]

        figures.append(Figure(charts.line_chart(
            title=f"Series {chart.get('series')}: forecast vs actual",
            series=[("actual", line(chart.get("actual"))),
                    ("forecast", line(chart.get("forecast"))),
                    (baseline, line(chart.get("baseline")))],
            x_label="period", y_label="value", value_format=".4g",
            x_tick_labels=(str(dates[0]), str(dates[-1])) if dates else None,
            dashed=(baseline,), frame=WIDE,
        ), caption="The last periods before the test window, then the test window: the "
                   f"model's forecast and the {baseline} baseline beside the actual values."))
    return "Forecast vs actual, with the baseline", figures, []


def _recommendation(stored: dict, result: dict) -> Shown:
    figures, tables = [], []
    exposure = stored.get("exposure") or []
    if exposure:
        figures.append(Figure(charts.grouped_bar_chart(
            title="Exposure by item popularity decile",
            categories=[str(row.get("decile")) for row in exposure],
            series=[("this model", [row.get("recommended_share") for row in exposure]),
                    ("popularity baseline",
                     [row.get("popularity_baseline_share") for row in exposure]),
                    ("catalogue", [row.get("catalogue_share") for row in exposure])],
            y_label="share of slots", x_label="popularity decile (10 = most popular)",
            y_max=1.0, value_format=".0%", frame=WIDE,
        ), caption="Share of recommended slots going to each tenth of the catalogue by "
                   "popularity: a model that only recommends bestsellers piles up on the right."))
    lists = stored.get("top_k") or []
    if lists:
        rows = []
        for entry in lists[:MAX_LIST_ROWS]:
            wanted = set(map(str, entry.get("held_out") or []))
            items = [f"{item} ✓" if str(item) in wanted else str(item)
                     for item in entry.get("items") or []]
            rows.append([str(entry.get("user")), ", ".join(items),
                         ", ".join(map(str, entry.get("held_out") or []))])
        tables.append(Table(caption="Top-k lists of test users (✓ = an item they went on to "
                                    "choose)", headers=["User", "Recommended", "Held out"],
                            rows=rows))
    return "Top-k lists and exposure by popularity", figures, tables


def _next_exercise(stored: dict, result: dict) -> Shown:
    zpd = stored.get("zpd") or {}
    low, high = zpd.get("low", 0.5), zpd.get("high", 0.85)
    band_label = f"zone of proximal development {low:g}–{high:g}"
    figures, rows = [], []
    share = stored.get("zpd_share") or {}
    if share:
        figures.append(Figure(charts.bar_chart(
            title="Recommendations in the zone of proximal development",
            bars=[("this model", share.get("model")), ("random choice", share.get("random"))],
            y_label="share of students", y_max=1.0, value_format=".0%", frame=WIDE,
        )))
    for index, entry in enumerate(stored.get("recommendations") or []):
        success = entry.get("predicted_success") or {}
        chosen = str(entry.get("recommended_skill"))
        if index < MAX_STUDENT_CHARTS and success:
            figures.append(Figure(charts.bar_chart(
                title=f"Student {entry.get('student')}: predicted success per skill",
                bars=[(str(skill), p) for skill, p in success.items()], y_max=1.0,
                y_label="predicted success", x_label="skill", band=(low, high),
                band_label=band_label, highlighted=[chosen], highlight_label="recommended",
                frame=WIDE,
            )))
        if index < MAX_LIST_ROWS:
            rows.append([str(entry.get("student")), chosen,
                         _number(success.get(chosen)),
                         "yes" if entry.get("in_zpd") else "no",
                         str(entry.get("random_skill")),
                         _number(success.get(str(entry.get("random_skill"))))])
    tables = [Table(caption="Next skill per test student, beside a random choice",
                    headers=["Student", "Recommended skill", "Predicted success",
                             "In the zone", "Random skill", "Its predicted success"],
                    rows=rows)] if rows else []
    return "Recommended next skills, with predicted success and the zone", figures, tables


def _mastery(stored: dict, result: dict) -> Shown:
    figures = []
    for entry in (stored.get("mastery") or [])[:MAX_STUDENT_CHARTS]:
        steps = entry.get("steps") or []
        skills = list((entry.get("skills") or {}).items())[:MAX_SKILL_LINES]
        series = [(str(skill), [(float(s), p) for s, p in zip(steps, values, strict=False)])
                  for skill, values in skills]
        answers = entry.get("answers") or []
        right = sum(int(a.get("correct", 0)) for a in answers)
        figures.append(Figure(charts.line_chart(
            title=f"Student {entry.get('student')}: predicted mastery per skill",
            series=series, x_label="answers so far", y_label="P(correct)", frame=WIDE,
        ), caption=f"{len(answers)} answers, {right} correct; each line is the predicted "
                   "chance of answering that skill correctly after each answer."))
    return "Mastery curves per student", figures, []


def _rul(stored: dict, result: dict) -> Shown:
    baseline = str(stored.get("baseline_name") or "baseline").replace("_", " ")
    figures = []
    for curve in (stored.get("rul") or [])[:MAX_UNIT_CHARTS]:
        cycles = curve.get("cycles") or []

        def line(values, cycles=cycles):
            return [(float(c), v) for c, v in zip(cycles, values or [], strict=False)
                    if c is not None]

        figures.append(Figure(charts.line_chart(
            title=f"Unit {curve.get('unit')}: remaining useful life",
            series=[("true", line(curve.get("true"))),
                    ("predicted", line(curve.get("predicted"))),
                    (baseline, line(curve.get("baseline")))],
            x_label="cycle", y_label="RUL (cycles)", value_format=".0f",
            dashed=(baseline,), frame=WIDE,
        )))
    cap = stored.get("rul_cap")
    heading = "Predicted vs true remaining useful life" + (
        f" (capped at {cap:g} cycles)" if isinstance(cap, int | float) else "")
    return heading, figures, []


# Chart kind (as families declare it) -> its builder.
RENDERERS: dict[str, Callable[[dict, dict], Shown]] = {
    "precision_recall": _binary,
    "confusion_matrix": _text,
    "confusion_with_images": _images,
    "forecast_vs_actual": _forecast,
    "top_k": _recommendation,
    "next_skill": _next_exercise,
    "mastery": _mastery,
    "rul_curve": _rul,
}


# Chart kind -> the pictures its results carry (training.pictures), drawn below the charts.
GALLERIES: dict[str, Callable[[dict, Callable[[str], str]], list[Gallery]]] = {
    "confusion_with_images": _image_galleries,
}


def _number(value) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "–"


def split_summary(split: dict | None) -> str:
    """The split in one line: its method, the part sizes, the seed, and the other plain
    facts a family records (test dates, units, users)."""
    if not split:
        return ""
    parts = [str(split.get("method", "")).replace("_", " ")]
    sizes = [f"{split[key]} {label}" for key, label in
             (("train", "train"), ("val", "validation"), ("test", "test")) if key in split]
    if sizes:
        parts.append(" / ".join(sizes))
    skipped = {"method", "train", "val", "test", "seed"}
    # Short facts only: sentences (a family's own description) are in the notes already.
    parts += [f"{key.replace('_', ' ')} {value}" for key, value in split.items()
              if key not in skipped and isinstance(value, str | int | float)
              and not isinstance(value, bool) and len(str(value)) <= MAX_SPLIT_FACT]
    if "seed" in split:
        parts.append(f"seed {split['seed']}")
    return ", ".join(p for p in parts if p)
