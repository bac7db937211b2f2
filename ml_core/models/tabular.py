"""The tabular model: a plain multilayer perceptron with one logit output.

Only Linear and ReLU layers, so Opacus can compute per-sample gradients for every
parameter (no BatchNorm, which mixes samples within a batch and breaks per-sample privacy).
"""

from __future__ import annotations

import torch
from torch import nn


class TabularMLP(nn.Module):
    """``n_features`` -> hidden ReLU layers -> one logit (the positive class)."""

    def __init__(self, n_features: int, hidden_sizes: tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        layers: list[nn.Module] = []
        width = self.n_features
        for size in self.hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch,)``."""
        return self.layers(x).squeeze(-1)

    def architecture(self) -> dict:
        """What it takes to rebuild this module before loading its weights."""
        return {"family": "tabular_mlp", "n_features": self.n_features,
                "hidden_sizes": list(self.hidden_sizes)}
