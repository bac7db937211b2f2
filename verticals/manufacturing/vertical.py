"""Placeholder until the manufacturing vertical's problems land."""

from verticals.base import Vertical

VERTICAL = Vertical(key="manufacturing", name="Manufacturing", description="", problems=())
