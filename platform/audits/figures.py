"""How a figure reads on every page: a number to fixed decimals, and epsilon at ONE
precision (the run page, report, review page, queue, model card, governance pages, ledger
and the dashboard all show ε the same way; the API keeps the raw floats)."""

from __future__ import annotations

EPSILON_DECIMALS = 2
ABSENT = "–"


def number(value: object, digits: int = 3) -> str:
    """``value`` to ``digits`` decimals, an en dash when absent, text as it is."""
    if value is None or value == "":
        return ABSENT
    try:
        return f"{float(value):.{int(digits)}f}"
    except (TypeError, ValueError):
        return str(value)


def epsilon(value: object) -> str:
    """An epsilon (spent, target, charged, left) as every page shows it."""
    return number(value, EPSILON_DECIMALS)
