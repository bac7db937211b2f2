"""Placeholder until the healthcare vertical's problems land."""

from verticals.base import Vertical

VERTICAL = Vertical(key="healthcare", name="Healthcare", description="", problems=())
