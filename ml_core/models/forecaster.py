"""A global forecaster: one MLP shared by every series, with a learnt series embedding
(``embedding_dim=0``: none, the series index is ignored; a private model releases no
per-series parameter).

Input per example: a row of numeric window features (scaled lags, rolling means, seasonal
lags, calendar of the target date, covariates, one-hot horizon step) and the series'
index (0 = a series unseen in training). Output: the target at that step, in the series'
own scale. Only Linear, ReLU and Embedding layers, all of which Opacus gives per-sample
gradients for.
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalForecaster(nn.Module):
    """``(numeric features, series index)`` -> one scaled forecast per example."""

    def __init__(
        self, n_features: int, n_series: int, *, embedding_dim: int = 4,
        hidden_sizes: tuple[int, ...] = (64, 32), zero_output: bool = False,
    ) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.n_series = int(n_series)
        self.embedding_dim = int(embedding_dim)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        # Row 0 stands for "a series not seen in training".
        self.series_embedding = (nn.Embedding(self.n_series + 1, self.embedding_dim)
                                 if self.embedding_dim else None)
        layers: list[nn.Module] = []
        width = self.n_features + self.embedding_dim
        for size in self.hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        if zero_output:
            # Forecasts 0 until trained: a residual model starts at its base forecast.
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, series: torch.Tensor) -> torch.Tensor:
        """Forecasts of shape ``(batch,)``."""
        if self.series_embedding is None:
            return self.layers(features).squeeze(-1)
        joined = torch.cat([features, self.series_embedding(series)], dim=-1)
        return self.layers(joined).squeeze(-1)

    def architecture(self) -> dict:
        """What it takes to rebuild this module before loading its weights."""
        return {"family": "forecaster", "n_features": self.n_features,
                "n_series": self.n_series, "embedding_dim": self.embedding_dim,
                "hidden_sizes": list(self.hidden_sizes)}

    @classmethod
    def from_architecture(cls, architecture: dict) -> GlobalForecaster:
        return cls(int(architecture["n_features"]), int(architecture["n_series"]),
                   embedding_dim=int(architecture["embedding_dim"]),
                   hidden_sizes=tuple(architecture["hidden_sizes"]))
