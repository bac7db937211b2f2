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

With a declared public catalogue's attributes (:mod:`ml_core.families.catalogue_features`),
``score`` also adds ``sum_c w_c phi_c(user, i)``: ``phi_c`` is the share of the user's
history that shares item ``i``'s value of public attribute ``c`` (numeric attributes: lies
near it), computed from the history like ``u`` and from two public per-item level tables
(buffers ``profile`` and ``match``, the catalogue's and nothing else), weighed by one
trained weight per attribute column (``content``, a bias-free Linear layer: a handful of
parameters, so DP-SGD's noise on them is small).

Index 0 of each table stands for "no item" (padding, or an item outside the released
vocabulary). Only Embedding layers, each called once per forward, so the per-sample
gradients of Opacus and of the book-keeping clipping collect each example in one place.
"""

from __future__ import annotations

import torch
from torch import nn

# The content weights' starting value (data-independent): a history's attributes count
# for the items that share them from the first step.
CONTENT_INIT = 1.0


class ItemFactors(nn.Module):
    """``(history (B, h), mixture (B, T, h), candidates (B, T, m))`` -> scores ``(B, T, m)``:
    for each of ``T`` user vectors per example (row ``t`` of ``mixture`` weighs the
    history's context embeddings), the scores of ``m`` candidate items."""

    def __init__(self, n_items: int, *, dim: int = 16, prior: torch.Tensor | None = None,
                 n_levels: int = 0, n_columns: int = 0, profile: torch.Tensor | None = None,
                 match: torch.Tensor | None = None, level_column: torch.Tensor | None = None
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
        self.n_levels, self.n_columns = int(n_levels), int(n_columns)
        if self.n_columns:
            def table(value: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
                return (torch.zeros(shape) if value is None
                        else torch.as_tensor(value, dtype=torch.float32).reshape(shape))

            levels = (self.n_items + 1, self.n_levels)
            self.register_buffer("profile", table(profile, levels))
            self.register_buffer("match", table(match, levels))
            # (levels, columns) one-hot: which attribute column each level belongs to.
            owner = (torch.zeros(self.n_levels, dtype=torch.long) if level_column is None
                     else torch.as_tensor(level_column, dtype=torch.long).reshape(-1))
            self.register_buffer("level_column", nn.functional.one_hot(
                owner, self.n_columns).float())
            self.content = nn.Linear(self.n_columns, 1, bias=False)
            # Public starting point: an item sharing the history's attributes scores higher.
            nn.init.constant_(self.content.weight, CONTENT_INIT)

    def forward(self, history: torch.Tensor, mixture: torch.Tensor,
                candidates: torch.Tensor) -> torch.Tensor:
        users = torch.einsum("bth,bhd->btd", mixture, self.context(history))
        items = self.target(candidates)  # (B, T, m, d)
        scores = (torch.einsum("btmd,btd->btm", items, users)
                  + self.item_bias(candidates)[..., 0] + self.prior[candidates])
        if self.n_columns:
            profiles = torch.einsum("bth,bhl->btl", mixture, self.profile[history])
            features = torch.einsum("btl,btml,lc->btmc", profiles, self.match[candidates],
                                    self.level_column)
            scores = scores + self.content(features)[..., 0]
        return scores

    @torch.no_grad()
    def user_vectors(self, history: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``(B, d)``: each row's weighted sum of its history's context embeddings."""
        return torch.einsum("bh,bhd->bd", weights, self.context(history))

    @torch.no_grad()
    def user_profiles(self, history: torch.Tensor, weights: torch.Tensor) -> torch.Tensor | None:
        """``(B, levels)``: each row's weighted mean of its history's public attribute
        levels; None without catalogue attributes."""
        if not self.n_columns:
            return None
        return torch.einsum("bh,bhl->bl", weights, self.profile[history])

    @torch.no_grad()
    def all_scores(self, users: torch.Tensor, profiles: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """Scores of every item (columns 1..n_items) for user vectors ``(B, d)`` and, with
        catalogue attributes, their profiles ``(B, levels)`` (:meth:`user_profiles`)."""
        scores = (users @ self.target.weight[1:].T + self.item_bias.weight[1:, 0]
                  + self.prior[1:])
        if self.n_columns and profiles is not None:
            per_level = self.level_column @ self.content.weight[0]  # (levels,)
            scores = scores + (profiles * per_level) @ self.match[1:].T
        return scores

    def architecture(self) -> dict:
        """What it takes to rebuild this module before loading its weights."""
        return {"family": "recommender", "model": "item_factors", "n_items": self.n_items,
                "dim": self.dim, "n_levels": self.n_levels, "n_columns": self.n_columns}

    @classmethod
    def from_architecture(cls, architecture: dict) -> ItemFactors:
        return cls(int(architecture["n_items"]), dim=int(architecture["dim"]),
                   n_levels=int(architecture.get("n_levels", 0)),
                   n_columns=int(architecture.get("n_columns", 0)))
