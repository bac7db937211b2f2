"""Turns a stored fairness report into what the report page shows: per attribute, the
per-group charts with the policy's threshold drawn, the private vs non-private comparison,
and the checks. Presentation only: the verdicts come from the report itself."""

from __future__ import annotations

from dataclasses import dataclass

from audits import verdicts
from ml_core import fairness
from training import charts

_CHECK_NAMES = {
    "four_fifths_rule": "Disparate impact ratio (four-fifths rule)",
    "demographic_parity_ratio": "Disparate impact ratio (four-fifths rule)",
    "disparate_impact_ratio": "Disparate impact ratio (four-fifths rule)",
    "demographic_parity_difference": "Demographic parity difference",
    "equalized_odds_difference": "Equalised odds difference",
}


_DISPARITY_NAMES = {
    "demographic_parity_difference": "Demographic parity difference (highest − lowest "
                                     "selection rate)",
    "demographic_parity_ratio": "Demographic parity ratio (lowest ÷ highest selection rate)",
    "equalized_odds_difference": "Equalised odds difference (largest TPR or FPR gap)",
}


# Per-group values of task-shaped reports (ml_core.group_metrics): regression error, and the
# scores of rankings, knowledge tracing and text classification.
_GROUP_VALUE_NAMES = {
    "selection_rate": "Selection rate", "tpr": "TPR", "fpr": "FPR", "accuracy": "Accuracy",
    "mae": "MAE", "rmse": "RMSE", "bias": "Bias (mean predicted − true)", "auc": "AUC",
    "macro_f1": "Macro F1", "ndcg@10": "NDCG@10", "zpd_share": "Share in the zone",
}
DECISION_VALUES = ("favourable_rate", "selection_rate", "tpr", "fpr", "accuracy")
_GROUP_VALUE_NAMES["favourable_rate"] = "Share given the favourable outcome"
_GROUP_VALUE_NAMES["selection_rate"] = "Selection rate (predicted positive)"
DEFAULT_FAVOURABLE = {"positive": True, "text": "predicted positive"}


def favourable_of(*, body: dict | None = None, policy: dict | None = None) -> dict:
    """The problem's favourable outcome as the report (or else its policy) recorded it."""
    found = (body or {}).get("favourable") or (policy or {}).get("favourable")
    return {**DEFAULT_FAVOURABLE, **found} if isinstance(found, dict) else dict(
        DEFAULT_FAVOURABLE)


def _favourable_rate(group: dict, favourable: dict) -> float | None:
    """The stored favourable share; reports stored before it existed give the selection
    rate's complement where the positive class is the harm."""
    if group.get("favourable_rate") is not None:
        return float(group["favourable_rate"])
    rate = group.get("selection_rate")
    if rate is None:
        return None
    return float(rate) if favourable.get("positive", True) else 1.0 - float(rate)
KIND_NOTES = {
    "operational": "Operational disparity: these groups are machine types, production lines "
                   "or stores, not people. A gap here is a reliability question for the "
                   "business, not a question of fairness to persons.",
}


@dataclass(frozen=True)
class AttributeSection:
    name: str
    passed: bool
    groups: list[dict]  # name, count, selection_rate, tpr, fpr, accuracy, judged, values
    charts: list[str]  # SVG markup, escaped
    checks: list[dict]  # name, label, value, threshold, passed
    disparities: list[tuple[str, float | None]]  # (readable name, value)
    note: str = ""  # e.g. why nothing was judged (too few large groups)
    # The per-group value columns of the groups table, as (key, label); each group's
    # "values" lists them in this order.
    columns: tuple[tuple[str, str], ...] = tuple(
        (key, _GROUP_VALUE_NAMES[key]) for key in DECISION_VALUES)
    kind: str = "personal"  # or "operational" (machine types, lines, stores)
    kind_note: str = ""
    # passed, failed or not judged (groups too small), from audits.verdicts: the badge
    # never says "Passed" for an attribute nobody could judge.
    verdict: verdicts.Verdict = verdicts.Verdict(code="passed", label="Passed", badge="pass")

    @property
    def judged(self) -> bool:
        return self.verdict.code != "not_judged"


def policy_rows(policy: dict) -> list[tuple[str, str]]:
    """The policy's thresholds as readable rows, the favourable outcome first."""
    text = favourable_of(policy=policy)["text"]
    labels = [
        ("min_disparate_impact_ratio", "Minimum disparate impact ratio (share "
         f"{text} of the least-favoured group over the most-favoured)", "≥"),
        ("max_demographic_parity_difference", "Maximum demographic parity difference", "≤"),
        ("max_equalized_odds_difference", "Maximum equalised odds difference", "≤"),
        ("min_group_size", "Groups smaller than this are reported but not judged", "<"),
    ]
    rows = [("Favourable outcome", text)] if policy else []
    return rows + [(words, f"{sign} {policy[key]}") for key, words, sign in labels
                   if key in policy]


def _rate(group: dict, key: str) -> float | None:
    value = group.get(key)
    return None if value is None else float(value)


def _value_columns(by_group: dict) -> tuple[tuple[str, str], ...]:
    """The per-group values present, decision rates last (as the binary report has them)."""
    present: list[str] = []
    for values in by_group.values():
        present += [k for k in values if k != "count" and k not in present]
    task = [k for k in present if k not in DECISION_VALUES]
    decision = [k for k in DECISION_VALUES if k in present]
    return tuple((k, _GROUP_VALUE_NAMES.get(k, k.replace("_", " "))) for k in task + decision)


def _task_charts(*, attribute: str, body: dict, groups: list[dict], twin: dict | None
                 ) -> list[str]:
    """Charts of a task-shaped report: error by group (regression, forecasting, RUL) or
    score by group (AUC, NDCG, macro F1, ...), each with the line its check draws."""
    by_group = body["by_group"]
    judged = [g for g in groups if g["judged"]] or groups
    checks = {c.get("name"): c for c in body.get("checks") or []}
    chart_list = []
    if any("mae" in v for v in by_group.values()):
        maes = [v for g in judged if (v := _rate(g, "mae")) is not None]
        limit = float((checks.get("mae_ratio") or {}).get("threshold") or 0) or None
        line = min(maes) * limit if maes and limit else None
        chart_list.append(charts.bar_chart(
            title=f"Mean absolute error by {attribute}",
            bars=[(g["name"], _rate(g, "mae")) for g in groups], y_label="MAE",
            x_label=attribute, value_format=".3g", threshold=line,
            threshold_label=f"{limit:g} × lowest =" if limit else "",
            flagged=[g["name"] for g in judged if line is not None
                     and (_rate(g, "mae") or 0) > line],
        ))
    scores = [name[: -len("_ratio")] for name in checks
              if name and name.endswith("_ratio") and name[: -len("_ratio")] in
              {k for v in by_group.values() for k in v} and name != "mae_ratio"]
    for score in scores:
        values = [v for g in judged if (v := _rate(g, score)) is not None]
        limit = float((checks.get(f"{score}_ratio") or {}).get("threshold") or 0) or None
        line = max(values) * limit if values and limit else None
        label = _GROUP_VALUE_NAMES.get(score, score)
        chart_list.append(charts.bar_chart(
            title=f"{label} by {attribute}", bars=[(g["name"], _rate(g, score)) for g in groups],
            y_label=label, x_label=attribute, y_max=1.0 if max(values or [0]) <= 1 else None,
            threshold=line, threshold_label=f"{limit:g} × highest =" if limit else "",
            flagged=[g["name"] for g in judged if line is not None
                     and _rate(g, score) is not None and _rate(g, score) < line],
        ))
    primary = "mae" if any("mae" in v for v in by_group.values()) else (
        scores[0] if scores else None)
    if primary and isinstance(twin, dict) and "by_group" in twin:
        twin_groups = twin["by_group"]
        chart_list.append(charts.grouped_bar_chart(
            title=f"{_GROUP_VALUE_NAMES.get(primary, primary)} by {attribute}: private vs "
                  "non-private model",
            categories=[g["name"] for g in groups],
            series=[("private", [_rate(by_group[g], primary) for g in by_group]),
                    ("non-private", [_rate(twin_groups[g], primary) if g in twin_groups
                                     else None for g in by_group])],
            y_label=_GROUP_VALUE_NAMES.get(primary, primary), x_label=attribute,
            value_format=".3g",
        ))
    return chart_list


def attribute_sections(*, report: dict, nonprivate_report: dict | None, policy: dict
                       ) -> list[AttributeSection]:
    """One section per sensitive attribute. Binary decision reports (selection rate, TPR,
    FPR) get the policy's lines; task-shaped reports (error or a score by group) get their
    own charts first, and decision charts too where they carry decision rates (text
    classification, knowledge tracing)."""
    ratio = float(policy.get("min_disparate_impact_ratio", 0.8))
    max_eo = float(policy.get("max_equalized_odds_difference", 0.15))
    sections = []
    for attribute, body in report.items():
        if not isinstance(body, dict) or "by_group" not in body:
            continue
        # Reports stored before groups were ordered: bands numerically, "<26" first.
        by_group = {g: body["by_group"][g] for g in
                    sorted(body["by_group"], key=fairness.group_sort_key)}
        judged = set(body.get("judged_groups") or by_group.keys())
        names = [str(g) for g in by_group]
        favourable = favourable_of(body=body, policy=policy)
        fav_text = favourable["text"]
        if any("selection_rate" in v for v in by_group.values()):
            by_group = {g: {**v, "favourable_rate": _favourable_rate(v, favourable)}
                        for g, v in by_group.items()}
        columns = tuple((k, f"Share {fav_text}" if k == "favourable_rate" else label)
                        for k, label in _value_columns(by_group))
        groups = [
            {"name": str(g), "judged": g in judged, **{k: by_group[g].get(k) for k in
             ("count", "selection_rate", "tpr", "fpr", "accuracy")},
             **{k: by_group[g].get(k) for k, _ in columns},
             "values": [by_group[g].get(k) for k, _ in columns]}
            for g in by_group
        ]
        twin = (nonprivate_report or {}).get(attribute)
        task_charts = [] if set(dict(columns)) <= set(DECISION_VALUES) else _task_charts(
            attribute=str(attribute), body=body, groups=groups, twin=twin)
        kind = str(body.get("kind") or policy.get("kind") or "personal")
        if not any("selection_rate" in v for v in by_group.values()):
            sections.append(_section(attribute=attribute, body=body, groups=groups,
                                     chart_list=task_charts, columns=columns, kind=kind))
            continue
        judged_groups = [g for g in groups if g["judged"]]
        # The four-fifths chart is about the favourable outcome (for credit risk: predicted
        # not to default), so the group it flags is the least favoured, never the most.
        sel = [(g["name"], _rate(g, "favourable_rate")) for g in groups]
        judged_sel = [v for g in judged_groups if (v := _rate(g, "favourable_rate")) is not None]
        sel_line = ratio * max(judged_sel) if judged_sel else None
        flagged_sel = [g["name"] for g in judged_groups
                       if sel_line is not None and (_rate(g, "favourable_rate") or 0) < sel_line]
        tprs = [v for g in judged_groups if (v := _rate(g, "tpr")) is not None]
        fprs = [v for g in judged_groups if (v := _rate(g, "fpr")) is not None]
        tpr_line = max(0.0, max(tprs) - max_eo) if tprs else None
        fpr_line = min(1.0, min(fprs) + max_eo) if fprs else None
        chart_list = [
            charts.bar_chart(
                title=f"Share {fav_text} by {attribute}",
                bars=sel, y_label=f"share {fav_text}", x_label=attribute, y_max=1.0,
                threshold=sel_line, threshold_label=f"{ratio:g} × highest =",
                flagged=flagged_sel,
            ),
            charts.bar_chart(
                title=f"True positive rate by {attribute}",
                bars=[(g["name"], _rate(g, "tpr")) for g in groups], y_label="TPR",
                x_label=attribute, y_max=1.0, threshold=tpr_line,
                threshold_label=f"highest − {max_eo:g} =",
                flagged=[g["name"] for g in judged_groups if tpr_line is not None
                         and _rate(g, "tpr") is not None and _rate(g, "tpr") < tpr_line],
            ),
            charts.bar_chart(
                title=f"False positive rate by {attribute}",
                bars=[(g["name"], _rate(g, "fpr")) for g in groups], y_label="FPR",
                x_label=attribute, y_max=1.0, threshold=fpr_line,
                threshold_label=f"lowest + {max_eo:g} =",
                flagged=[g["name"] for g in judged_groups if fpr_line is not None
                         and _rate(g, "fpr") is not None and _rate(g, "fpr") > fpr_line],
            ),
        ]
        if isinstance(twin, dict) and "by_group" in twin and not task_charts:
            twin_groups = twin["by_group"]
            chart_list.append(charts.grouped_bar_chart(
                title=f"Share {fav_text} by {attribute}: private vs non-private model",
                categories=names,
                series=[
                    ("private", [_rate(by_group[g], "favourable_rate") for g in by_group]),
                    ("non-private", [
                        _favourable_rate(twin_groups[g], favourable) if g in twin_groups
                        else None for g in by_group
                    ]),
                ],
                y_label=f"share {fav_text}", x_label=attribute, y_max=1.0,
            ))
        sections.append(_section(attribute=attribute, body=body, groups=groups,
                                 chart_list=task_charts + chart_list, columns=columns,
                                 kind=kind))
    return sections


# The four-fifths rule is the 0.8 ratio; any other threshold is a plain ratio check.
FOUR_FIFTHS = 0.8


def _check_label(name: str, threshold: float | None = None) -> str:
    if name in _CHECK_NAMES:
        label = _CHECK_NAMES[name]
        if threshold is not None and abs(float(threshold) - FOUR_FIFTHS) > 1e-9:
            label = label.replace(" (four-fifths rule)", "")
        return label
    if name == "mae_ratio":
        return "Error ratio (highest group MAE ÷ lowest)"
    if name.endswith("_ratio"):
        score = name[: -len("_ratio")]
        return f"{_GROUP_VALUE_NAMES.get(score, score)} ratio (lowest group ÷ highest)"
    return name


def _section(*, attribute, body: dict, groups: list[dict], chart_list: list[str],
             columns: tuple[tuple[str, str], ...], kind: str) -> AttributeSection:
    verdict = verdicts.for_attribute(body)
    # The checks of an attribute that was not judged are shown for information only.
    checks = [{**check, "label": _check_label(check.get("name", ""), check.get("threshold")),
               "judged": verdict.code != "not_judged"}
              for check in body.get("checks", [])]
    # Words, not numbers (worst/best group names) are shown as they are.
    disparities = [(_DISPARITY_NAMES.get(k, k.replace("_", " ")), v)
                   for k, v in (body.get("disparities") or {}).items()]
    return AttributeSection(
        name=str(attribute), passed=bool(body.get("passed")), groups=groups,
        charts=chart_list, checks=checks, disparities=disparities,
        note=str(body.get("note") or ""), columns=columns, kind=kind,
        kind_note=KIND_NOTES.get(kind, ""), verdict=verdict,
    )
