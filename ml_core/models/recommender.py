"""Matrix factorisation for implicit feedback: user and item embeddings plus an item bias.

``score(u, i) = <user_u, item_i> + bias_i``. Index 0 of each table stands for "unknown"
(a user or item not seen in training). Only Embedding layers, which Opacus gives
per-sample gradients for; every item of an example goes through ONE call of the item
table (shape ``(batch, k)``), so each example's gradient is collected in one place.
"""

from __future__ import annotations

import torch
from torch import nn


class MatrixFactorisation(nn.Module):
    """``(users (B,), items (B, k))`` -> scores ``(B, k)``."""

    def __init__(self, n_users: int, n_items: int, *, dim: int = 16) -> None:
        super().__init__()
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        self.dim = int(dim)
        self.user_embedding = nn.Embedding(self.n_users + 1, self.dim)
        self.item_embedding = nn.Embedding(self.n_items + 1, self.dim)
        self.item_bias = nn.Embedding(self.n_items + 1, 1)
        # Small initial vectors: BPR starts near "all items equal" and the bias picks up
        # popularity first.
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        user = self.user_embedding(users)  # (B, d)
        item = self.item_embedding(items)  # (B, k, d)
        return (item * user.unsqueeze(1)).sum(-1) + self.item_bias(items).squeeze(-1)

    def all_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every known item (columns 1..n_items) for each user: ``(B, n_items)``."""
        user = self.user_embedding(users)
        items = self.item_embedding.weight[1:]
        return user @ items.T + self.item_bias.weight[1:, 0]

    def architecture(self) -> dict:
        """What it takes to rebuild this module before loading its weights."""
        return {"family": "recommender", "n_users": self.n_users, "n_items": self.n_items,
                "dim": self.dim}

    @classmethod
    def from_architecture(cls, architecture: dict) -> MatrixFactorisation:
        return cls(int(architecture["n_users"]), int(architecture["n_items"]),
                   dim=int(architecture["dim"]))
