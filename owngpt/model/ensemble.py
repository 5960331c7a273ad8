"""Several models as one: the average of their next-token probabilities.

    p(x_t | x_<t) = sum_i w_i p_i(x_t | x_<t)        (w_i = 1/n unless given)

An Ensemble follows the model protocol of owngpt/model/registry.py (`forward(idx, valid) -> (B, T, V)` logits, a
`cfg` with block_size and vocab_size), so scoring, generation, chat and evaluation use it like one model; its
"logits" are log-probabilities. The members must share a tokenizer (the caller checks it: owngpt/generate/api.py);
their context is the shortest member's and their vocabulary the largest (a member with fewer rows, padded to
another multiple, gives those ids probability 0). It has no KV cache (the generation runner reruns the sequence)
and is never saved or trained: it exists only in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from owngpt.errors import OwnGPTError


@dataclass
class EnsembleConfig:
    block_size: int
    vocab_size: int
    weights: tuple[float, ...]


class Ensemble(nn.Module):
    arch = "ensemble"

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if len(members) < 2:
            raise OwnGPTError("an ensemble needs at least two models")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members) or any(w <= 0 or not math.isfinite(w) for w in weights):
            raise OwnGPTError(f"ensemble weights must be {len(members)} positive numbers, not {weights}")
        total = sum(weights)
        self.members = nn.ModuleList(members)
        self.cfg = EnsembleConfig(block_size=min(m.cfg.block_size for m in members),
                                  vocab_size=max(m.cfg.vocab_size for m in members),
                                  weights=tuple(w / total for w in weights))
        # Python floats, not a buffer: moving the ensemble to bf16 must not round the weights
        self.log_weights = [math.log(w / total) for w in weights]

    def forward(self, idx: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, V) log of the weighted mean of the members' probabilities."""
        V = self.cfg.vocab_size
        parts = []
        for w, member in zip(self.log_weights, self.members):
            logp = torch.log_softmax(member(idx, valid=valid).float(), dim=-1)  # (B, T, V_i)
            if logp.size(-1) < V:  # ids past this member's vocabulary: probability 0
                logp = torch.cat([logp, logp.new_full((*logp.shape[:-1], V - logp.size(-1)), float("-inf"))], dim=-1)
            parts.append(logp + w)
        return torch.logsumexp(torch.stack(parts), dim=0)  # (B, T, V)

    def describe(self) -> str:
        return f"ensemble of {len(self.members)} models (weights {', '.join(f'{w:.2f}' for w in self.cfg.weights)})"
