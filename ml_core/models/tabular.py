"""The tabular model: a multilayer perceptron with one logit output, plus a linear path.

Only Linear and ReLU layers, so Opacus can compute per-sample gradients for every
parameter (no BatchNorm, which mixes samples within a batch and breaks per-sample privacy).

With ``linear_skip`` the logit is the MLP's plus a linear function of the inputs (a
wide-and-deep model): the model can do at least what logistic regression does, and the
main effects of wide one-hot or hashed code columns are learnt by one layer, which under
DP-SGD's noise learns them faster than a stack does (docs/real-data.md).
"""

from __future__ import annotations

import torch
from torch import nn


class TabularMLP(nn.Module):
    """``n_features`` -> hidden ReLU layers -> one logit (the positive class), plus
    ``skip(x)`` (a bias-free Linear to the logit) when ``linear_skip``."""

    def __init__(self, n_features: int, hidden_sizes: tuple[int, ...] = (64, 32), *,
                 linear_skip: bool = False) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.linear_skip = bool(linear_skip)
        layers: list[nn.Module] = []
        width = self.n_features
        for size in self.hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)
        self.skip = nn.Linear(self.n_features, 1, bias=False) if self.linear_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch,)``."""
        logits = self.layers(x)
        if self.skip is not None:
            logits = logits + self.skip(x)
        return logits.squeeze(-1)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor, *, block_rows: int) -> torch.Tensor:
        """``sigmoid(self(x))`` for scoring, bit for bit, computed ``block_rows`` rows at a
        time into buffers allocated once: each Linear is the ``addmm`` that ``nn.Linear``
        runs on a 2-D input, each ReLU runs in place. Blocks that fit the CPU cache and no
        per-block allocations make this faster than one pass over all rows."""
        scores = torch.empty(len(x), dtype=x.dtype)
        linears = [layer for layer in self.layers if isinstance(layer, nn.Linear)]
        buffers = {id(layer): torch.empty(min(block_rows, len(x)), layer.out_features,
                                          dtype=x.dtype) for layer in linears}
        for start in range(0, len(x), block_rows):
            inputs = hidden = x[start:start + block_rows]
            rows = len(hidden)
            for layer in self.layers:
                if isinstance(layer, nn.Linear):
                    out = buffers[id(layer)][:rows]
                    torch.addmm(layer.bias, hidden, layer.weight.t(), out=out)
                    hidden = out
                else:  # the ReLUs (see the module docstring: nothing else is allowed)
                    hidden = torch.relu_(hidden)
            if self.skip is not None:
                hidden = hidden + torch.mm(inputs, self.skip.weight.t())
            torch.sigmoid(hidden.reshape(-1), out=scores[start:start + rows])
        return scores

    def architecture(self) -> dict:
        """What it takes to rebuild this module before loading its weights."""
        return {"family": "tabular_mlp", "n_features": self.n_features,
                "hidden_sizes": list(self.hidden_sizes), "linear_skip": self.linear_skip}
