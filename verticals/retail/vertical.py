"""Placeholder until the retail vertical's problems land."""

from verticals.base import Vertical

VERTICAL = Vertical(key="retail", name="Retail", description="", problems=())
