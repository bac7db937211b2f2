"""Turning ml_core results into values every database's JSON column accepts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum


def json_safe(value):
    """Recursively convert numpy scalars/arrays, tuples and enums; NaN and infinities -> None.

    PostgreSQL's jsonb refuses NaN, and Python's json module would happily write it.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_safe(value.tolist())
    if hasattr(value, "item"):
        return json_safe(value.item())
    return str(value)
