"""The words and badge of a fairness verdict, for every page, the card and the API.

The verdict itself comes from ``ml_core.fairness`` (passed, failed, not judged); this module
only says it, so the report, the review page, the queue, the gates, the card and the API
cannot disagree about an attribute whose groups were too small to judge.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml_core.fairness import FAILED, NOT_JUDGED, PASSED, attribute_verdict, report_verdict

LABELS = {PASSED: "Passed", FAILED: "Failed", NOT_JUDGED: "Not judged"}
# The CSS class of the status badge (static/css): green, red, amber.
BADGES = {PASSED: "pass", FAILED: "fail", NOT_JUDGED: "warning"}


@dataclass(frozen=True)
class Verdict:
    code: str  # passed, failed, not_judged
    label: str
    badge: str
    why: str = ""  # for "not judged": which attributes, and why

    def to_dict(self) -> dict:
        return {"verdict": self.code, "label": self.label, "why": self.why}


def not_judged_reason(part: dict, *, min_group_size: int | None = None) -> str:
    """Why one attribute was not judged, from its own report."""
    if part.get("note"):
        return str(part["note"])
    size = f" at least {min_group_size} rows" if min_group_size else " enough rows"
    return f"fewer than two groups have{size}"


def for_attribute(part: dict) -> Verdict:
    code = attribute_verdict(part)
    why = not_judged_reason(part) if code == NOT_JUDGED else ""
    return Verdict(code=code, label=LABELS[code], badge=BADGES[code], why=why)


def for_report(report: dict | None) -> Verdict:
    """The whole report; "not judged" names the attributes that could not be judged."""
    report = report or {}
    code = report_verdict(report)
    skipped = [name for name, part in report.items()
               if isinstance(part, dict) and attribute_verdict(part) == NOT_JUDGED]
    if code == NOT_JUDGED:
        why = ("no sensitive attribute was audited" if not skipped else
               "no attribute has two groups large enough to compare: " + ", ".join(skipped))
    elif skipped:
        why = "not judged (groups too small): " + ", ".join(skipped)
    else:
        why = ""
    return Verdict(code=code, label=LABELS[code], badge=BADGES[code], why=why)
