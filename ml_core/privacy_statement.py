"""A run's privacy report in plain words, for every page that shows it (one formatting
layer: the run page, the model card, the review page and the run's notes)."""

from __future__ import annotations


def guarantee(report: dict) -> dict:
    """What a run's privacy report covers, in words for the pages (run, card, review, notes):
    ``unit``, ``bound``, ``breakdown``, ``statement``, ``curator_only``; empty for a run
    without DP or whose report predates the privacy unit."""
    if not report.get("enabled") or "unit" not in report:
        return {}
    unit, bound = report["unit"], report["contribution_bound"]
    breakdown = ", ".join(f"{stage['stage']} ε={stage['epsilon']:.3g}"
                          for stage in report["stages"])
    rows = bound["max_rows_per_person"]
    over = ("the released preprocessing statistics and the training steps"
            if len(report["stages"]) > 1 else "the training steps")
    # Declared public by the analyst (e.g. a recommender's item catalogue): no budget spent.
    declared = report.get("declared_public") or ()
    public = f" Declared public, no budget spent: {'; '.join(declared)}." if declared else ""
    return {
        "unit": unit["text"] + (f" ({unit['note']})" if unit.get("note") else ""),
        "bound": (f"at most {rows} row{'s' if rows != 1 else ''} per person per step; "
                  f"{bound['gradient']}"),
        "breakdown": (f"{breakdown}, composed with the {report.get('composition', 'pld')} "
                      "accountant"),
        "statement": (f"({report['epsilon']:.3f}, {report['delta']:.2g})-differential privacy "
                      f"for {unit['text']}, composed over {over} ({breakdown}).{public}"),
        "curator_only": ("The baseline, the non-private twin, the test metrics and the "
                         "per-group fairness tables are computed for the curator's eyes and "
                         "are not part of the released model."),
    }


def privacy_notes(report: dict) -> list[str]:
    """Plain-language notes on what the run's epsilon covers (none for a non-private run)."""
    words = guarantee(report)
    if not words:
        return []
    return [f"Privacy: {words['statement']} Contribution bound: {words['bound']}.",
            words["curator_only"]]
