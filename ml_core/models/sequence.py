"""Sequence models over learners' response histories: a DKT-style GRU.

Deep Knowledge Tracing (Piech et al., 2015): each response is one interaction token,
``(skill, correct)``; a GRU reads the tokens in order and, after every step, scores the
probability of answering each skill correctly next. The model here predicts response ``t``
from responses ``0..t-1`` only: step ``t``'s input is the token of response ``t-1`` (a
start token at step 0), so its output for response ``t``'s skill never sees ``t``'s answer.

The recurrent layer is a plain ``nn.GRU`` (fast, cuDNN on a GPU). Opacus cannot compute
per-sample gradients through ``nn.GRU``'s fused kernel, so private training passes the
model through ``ModuleValidator.fix``, which swaps it for ``opacus.layers.DPGRU`` (the same
maths built from per-step linear layers Opacus can hook). DPGRU's ``state_dict`` carries
the ``nn.GRU`` names too, so :func:`plain_state_dict` turns a privately trained model's
weights back into this module's layout.
"""

from __future__ import annotations

import torch
from torch import nn

START_TOKEN = 0


def interaction_tokens(skills: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Token of each response: ``1 + 2 * skill + correct`` (0 is the start token)."""
    return 1 + 2 * skills.long() + correct.long()


def shifted_inputs(skills: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Inputs for ``(batch, steps)`` responses: the start token, then each response's token
    one step later, so step ``t`` only sees responses before ``t``."""
    tokens = interaction_tokens(skills, correct)
    start = torch.full_like(tokens[:, :1], START_TOKEN)
    return torch.cat([start, tokens[:, :-1]], dim=1)


class KnowledgeTracingGRU(nn.Module):
    """Interaction embedding -> GRU -> one logit per skill, for every step.

    ``n_skills`` counts the skill vocabulary (an "unknown skill" slot included, when the
    caller keeps one). Only Embedding, GRU and Linear layers: Opacus handles all three once
    the GRU is swapped for DPGRU.
    """

    def __init__(self, n_skills: int, *, embed_dim: int = 16, hidden_size: int = 32) -> None:
        super().__init__()
        self.n_skills = int(n_skills)
        self.embed_dim = int(embed_dim)
        self.hidden_size = int(hidden_size)
        self.embedding = nn.Embedding(2 * self.n_skills + 1, self.embed_dim)
        self.gru = nn.GRU(self.embed_dim, self.hidden_size, batch_first=True)
        self.skill_logits = nn.Linear(self.hidden_size, self.n_skills)

    def all_skill_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(batch, steps, n_skills)`` logits from ``(batch, steps)`` input tokens."""
        hidden, _ = self.gru(self.embedding(inputs))
        return self.skill_logits(hidden)

    def forward(self, inputs: torch.Tensor, skills: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, steps)`` of answering ``skills[:, t]`` correctly at step ``t``."""
        logits = self.all_skill_logits(inputs)
        return logits.gather(-1, skills.long().unsqueeze(-1)).squeeze(-1)

    def architecture(self) -> dict:
        """What it takes to rebuild this module before loading its weights."""
        return {"family": "knowledge_tracing_gru", "n_skills": self.n_skills,
                "embed_dim": self.embed_dim, "hidden_size": self.hidden_size}


def build_sequence_model(architecture: dict) -> KnowledgeTracingGRU:
    """Rebuild a model from :meth:`KnowledgeTracingGRU.architecture`."""
    if architecture.get("family") != "knowledge_tracing_gru":
        raise ValueError(f"not a knowledge tracing architecture: {architecture.get('family')!r}")
    return KnowledgeTracingGRU(
        int(architecture["n_skills"]), embed_dim=int(architecture["embed_dim"]),
        hidden_size=int(architecture["hidden_size"]),
    )


def plain_state_dict(module: nn.Module, template: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s weights (possibly with Opacus' DPGRU inside) in ``template``'s layout.

    DPGRU exposes each weight twice (``gru.weight_ih_l0`` and ``gru.l0.ih.weight``); only
    the ``nn.GRU`` names are kept. Tensors are detached copies on the CPU.
    """
    wanted = set(template.state_dict())
    state = {key: value.detach().cpu().clone() for key, value in module.state_dict().items()
             if key in wanted}
    missing = wanted - set(state)
    if missing:
        raise KeyError(f"weights missing for {sorted(missing)}")
    return state
