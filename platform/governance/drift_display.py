"""A stored drift report as the model page shows it: PSI per feature and per sensitive
group, each read against the usual bands (below 0.1 stable, 0.1 to 0.25 a moderate shift,
0.25 and above a major shift), as a chart and a table, with when it was measured."""

from __future__ import annotations

from dataclasses import dataclass

from governance.models import DriftReport
from ingestion.codebook import Codebook
from ml_core.fairness import group_sort_key
from training import charts

MODERATE, MAJOR = 0.1, 0.25


def psi_band(value: float | None) -> str:
    if value is None:
        return "not measured"
    if value >= MAJOR:
        return "major shift"
    return "moderate shift" if value >= MODERATE else "stable"


@dataclass(frozen=True)
class DriftView:
    report: DriftReport
    chart: str  # SVG, escaped by training.charts
    features: list[dict]  # name, psi, band
    groups: list[dict]  # attribute, group, rows, share_psi, max_psi, band, rate shift


def drift_view(report: DriftReport) -> DriftView:
    body = report.report or {}
    shown = Codebook.of_run(report.model_version.run)
    features = sorted(
        ({"name": shown.column(name), "psi": value, "band": psi_band(value)}
         for name, value in (body.get("features") or {}).items()),
        key=lambda row: -(row["psi"] if row["psi"] is not None else -1.0))
    chart = charts.bar_chart(
        title=f"PSI per feature, measured {report.created_at:%Y-%m-%d %H:%M}",
        bars=[(row["name"], row["psi"]) for row in features], y_label="PSI",
        x_label="feature", value_format=".3f", threshold=MAJOR,
        threshold_label="major shift ≥", band=(MODERATE, MAJOR),
        band_label="moderate shift 0.1–0.25",
        flagged=[row["name"] for row in features if row["band"] == "major shift"],
        highlighted=[row["name"] for row in features if row["band"] == "moderate shift"],
        highlight_label="moderate shift")
    groups = []
    for attribute, part in (body.get("groups") or {}).items():
        for group in sorted(part.get("by_group") or {}, key=group_sort_key):
            entry = part["by_group"][group]
            groups.append({
                "attribute": shown.column(attribute), "group": shown.value(attribute, group),
                "rows_reference": entry.get("rows_reference"),
                "rows_current": entry.get("rows_current"),
                "share_psi": part.get("share_psi"), "max_psi": entry.get("max_psi"),
                "band": psi_band(entry.get("max_psi")) if entry.get("judged")
                else "too few rows to judge",
                "rate_shift": entry.get("positive_rate_shift")})
    return DriftView(report=report, chart=chart, features=features, groups=groups)
