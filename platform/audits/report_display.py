"""Turns a stored fairness report into what the report page shows: per attribute, the
per-group charts with the policy's threshold drawn, the private vs non-private comparison,
and the checks. Presentation only: the verdicts come from the report itself."""

from __future__ import annotations

from dataclasses import dataclass

from audits import charts

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


@dataclass(frozen=True)
class AttributeSection:
    name: str
    passed: bool
    groups: list[dict]  # name, count, selection_rate, tpr, fpr, accuracy, judged
    charts: list[str]  # SVG markup, escaped
    checks: list[dict]  # name, label, value, threshold, passed
    disparities: list[tuple[str, float | None]]  # (readable name, value)
    note: str = ""  # e.g. why nothing was judged (too few large groups)


def policy_rows(policy: dict) -> list[tuple[str, str]]:
    """The policy's thresholds as readable rows."""
    labels = [
        ("min_disparate_impact_ratio", "Minimum disparate impact ratio (selection rate of the "
         "least-selected group over the most-selected)", "≥"),
        ("max_demographic_parity_difference", "Maximum demographic parity difference", "≤"),
        ("max_equalized_odds_difference", "Maximum equalised odds difference", "≤"),
        ("min_group_size", "Groups smaller than this are reported but not judged", "<"),
    ]
    return [(text, f"{sign} {policy[key]}") for key, text, sign in labels if key in policy]


def _rate(group: dict, key: str) -> float | None:
    value = group.get(key)
    return None if value is None else float(value)


def attribute_sections(*, report: dict, nonprivate_report: dict | None, policy: dict
                       ) -> list[AttributeSection]:
    ratio = float(policy.get("min_disparate_impact_ratio", 0.8))
    max_eo = float(policy.get("max_equalized_odds_difference", 0.15))
    sections = []
    for attribute, body in report.items():
        if not isinstance(body, dict) or "by_group" not in body:
            continue
        by_group = body["by_group"]
        judged = set(body.get("judged_groups") or by_group.keys())
        names = [str(g) for g in by_group]
        groups = [
            {"name": str(g), "judged": g in judged, **{k: by_group[g].get(k) for k in
             ("count", "selection_rate", "tpr", "fpr", "accuracy")}}
            for g in by_group
        ]
        judged_groups = [g for g in groups if g["judged"]]
        sel = [(g["name"], _rate(g, "selection_rate")) for g in groups]
        judged_sel = [v for g in judged_groups if (v := _rate(g, "selection_rate")) is not None]
        sel_line = ratio * max(judged_sel) if judged_sel else None
        flagged_sel = [g["name"] for g in judged_groups
                       if sel_line is not None and (_rate(g, "selection_rate") or 0) < sel_line]
        tprs = [v for g in judged_groups if (v := _rate(g, "tpr")) is not None]
        fprs = [v for g in judged_groups if (v := _rate(g, "fpr")) is not None]
        tpr_line = max(0.0, max(tprs) - max_eo) if tprs else None
        fpr_line = min(1.0, min(fprs) + max_eo) if fprs else None
        chart_list = [
            charts.bar_chart(
                title=f"Selection rate by {attribute}",
                bars=sel, y_label="selection rate", x_label=attribute, y_max=1.0,
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
        twin = (nonprivate_report or {}).get(attribute)
        if isinstance(twin, dict) and "by_group" in twin:
            twin_groups = twin["by_group"]
            chart_list.append(charts.grouped_bar_chart(
                title=f"Selection rate by {attribute}: private vs non-private model",
                categories=names,
                series=[
                    ("private", [_rate(by_group[g], "selection_rate") for g in by_group]),
                    ("non-private", [
                        _rate(twin_groups[g], "selection_rate") if g in twin_groups else None
                        for g in by_group
                    ]),
                ],
                y_label="selection rate", x_label=attribute, y_max=1.0,
            ))
        checks = [
            {**check, "label": _CHECK_NAMES.get(check.get("name", ""), check.get("name", ""))}
            for check in body.get("checks", [])
        ]
        sections.append(AttributeSection(
            name=str(attribute), passed=bool(body.get("passed")), groups=groups,
            charts=chart_list, checks=checks, disparities=[(_DISPARITY_NAMES.get(k, k), v)
                         for k, v in (body.get("disparities") or {}).items()],
            note=str(body.get("note") or ""),
        ))
    return sections
