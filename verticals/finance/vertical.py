"""Placeholder; replaced by the finance vertical's real definition."""
from verticals.base import Vertical

VERTICAL = Vertical(key="finance", name="Finance", description="", problems=())
