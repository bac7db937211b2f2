"""Placeholder until the education vertical's problems land."""

from verticals.base import Vertical

VERTICAL = Vertical(key="education", name="Education", description="", problems=())
