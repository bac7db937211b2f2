"""Model families the core can train, built from a plain architecture description."""

from __future__ import annotations

from torch import nn

from ml_core.models.tabular import TabularMLP

__all__ = ["TabularMLP", "build_model"]


def build_model(architecture: dict) -> nn.Module:
    """Rebuild a module from ``architecture`` (as returned by its ``architecture()``)."""
    family = architecture.get("family")
    if family == "tabular_mlp":
        return TabularMLP(
            int(architecture["n_features"]), tuple(architecture.get("hidden_sizes", ())),
            # Artifacts saved before the linear path existed have none.
            linear_skip=bool(architecture.get("linear_skip", False)),
        )
    raise ValueError(f"unknown model family: {family!r}")
