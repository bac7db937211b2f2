"""A 1-D convolutional regressor over fixed-length windows of a unit's sensor readings.

Conv1d, ReLU and Linear layers only: Opacus has per-sample gradient samplers for each, so
the same module trains with or without DP-SGD (no recurrent layer to swap for DPGRU, and no
BatchNorm, which mixes samples). On CPU it is also several times faster per step than a
GRU under DP, whose Opacus version unrolls the time steps in Python.
"""

from __future__ import annotations

import torch
from torch import nn


class SequenceRegressor(nn.Module):
    """``(batch, window, n_features)`` -> one number per window (the scaled RUL).

    Two same-length convolutions over time, then the last time step's channels (the
    current state) and their mean over the window (the recent trend's level) go through
    a small MLP head.
    """

    def __init__(self, n_features: int, *, window: int, channels: int = 32,
                 hidden: int = 32, kernel_size: int = 5) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.window = int(window)
        self.channels = int(channels)
        self.hidden = int(hidden)
        self.kernel_size = int(kernel_size)
        padding = self.kernel_size // 2
        self.convolutions = nn.Sequential(
            nn.Conv1d(self.n_features, self.channels, self.kernel_size, padding=padding),
            nn.ReLU(),
            nn.Conv1d(self.channels, self.channels, self.kernel_size, padding=padding),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * self.channels, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, 1),
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Predictions of shape ``(batch,)``."""
        features = self.convolutions(windows.transpose(1, 2))
        summary = torch.cat([features[:, :, -1], features.mean(dim=2)], dim=1)
        return self.head(summary).squeeze(-1)

    def architecture(self) -> dict:
        """What it takes to rebuild this module before loading its weights."""
        return {"family": "sequence_regressor", "n_features": self.n_features,
                "window": self.window, "channels": self.channels, "hidden": self.hidden,
                "kernel_size": self.kernel_size}

    @classmethod
    def from_architecture(cls, architecture: dict) -> SequenceRegressor:
        return cls(int(architecture["n_features"]), window=int(architecture["window"]),
                   channels=int(architecture["channels"]), hidden=int(architecture["hidden"]),
                   kernel_size=int(architecture["kernel_size"]))
