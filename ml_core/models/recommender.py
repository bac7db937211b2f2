"""Item factors for implicit feedback: a user is the mean of their history, never a parameter.

``score(user, i) = <u, target_i> + bias_i + prior_i`` with ``u = sum_j w_j context_j``
over the items ``j`` of the user's own history (weights summing to 1: their mean). The
module holds only item-side tables (two item embeddings, an item bias and the prior), so
a released model carries no per-user parameter: a user's vector is computed at serving
time from that user's history and the released item factors (the joint-DP pattern of
private alternating least squares, Jain et al. 2018; here an asymmetric factorisation, as
Paterek's NSVD and Kabbur et al.'s FISM, whose user side is a function of the history
rather than a free vector). A user with no known history gets the zero vector: the item
biases and the prior alone rank for them.
``prior`` (a buffer, not trained) is the log of each item's released popularity (the
private vocabulary's noisy user count), so training starts from popularity and the
trained parameters only have to learn what the history adds.

Index 0 of each table stands for "no item" (padding, or an item outside the released
vocabulary). Only Embedding layers, each called once per forward, so the per-sample
gradients of Opacus and of the book-keeping clipping collect each example in one place.
"""

from __future__ import annotations

import torch
from torch import nn


class ItemFactors(nn.Module):
    """``(history (B, h), mixture (B, T, h), candidates (B, T, m))`` -> scores ``(B, T, m)``:
    for each of ``T`` user vectors per example (row ``t`` of ``mixture`` weighs the
    history's context embeddings), the scores of ``m`` candidate items."""

    def __init__(self, n_items: int, *, dim: int = 16, prior: torch.Tensor | None = None
                 ) -> None:
        super().__init__()
        self.n_items = int(n_items)
        self.dim = int(dim)
        self.context = nn.Embedding(self.n_items + 1, self.dim)
        self.target = nn.Embedding(self.n_items + 1, self.dim)
        self.item_bias = nn.Embedding(self.n_items + 1, 1)
        # Small initial vectors: training starts near "all items equal" and the bias picks
        # up popularity first.
        for table in (self.context, self.target):
            nn.init.normal_(table.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("prior", torch.zeros(self.n_items + 1) if prior is None
                             else torch.as_tensor(prior, dtype=torch.float32).reshape(-1))

    def forward(self, history: torch.Tensor, mixture: torch.Tensor,
                candidates: torch.Tensor) -> torch.Tensor:
        users = torch.einsum("bth,bhd->btd", mixture, self.context(history))
        items = self.target(candidates)  # (B, T, m, d)
        return (torch.einsum("btmd,btd->btm", items, users)
                + self.item_bias(candidates)[..., 0] + self.prior[candidates])

    @torch.no_grad()
    def user_vectors(self, history: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``(B, d)``: each row's weighted sum of its history's context embeddings."""
        return torch.einsum("bh,bhd->bd", weights, self.context(history))

    @torch.no_grad()
    def all_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item (columns 1..n_items) for user vectors ``(B, d)``."""
        return users @ self.target.weight[1:].T + self.item_bias.weight[1:, 0] + self.prior[1:]

    def architecture(self) -> dict:
        """What it takes to rebuild this module before loading its weights."""
        return {"family": "recommender", "model": "item_factors", "n_items": self.n_items,
                "dim": self.dim}

    @classmethod
    def from_architecture(cls, architecture: dict) -> ItemFactors:
        return cls(int(architecture["n_items"]), dim=int(architecture["dim"]))
