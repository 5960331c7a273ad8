"""THE masked log-likelihood: how well a model predicts chosen tokens of given sequences, batched.

Perplexity and bits-per-byte on held-out text, MMI reranking (log p(context | reply) under the backward model)
and evaluation all score through `token_nll`. It needs only the small model protocol every registered
architecture follows: `model(ids (B, T)) -> logits (B, T, V)` and `model.cfg.block_size`. Sequences are
right-padded into batches (a causal model's padding after a sequence cannot change it) and scored in eval mode
without autograd; the model's train/eval mode is restored afterwards.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from owngpt.errors import OwnGPTError
from owngpt.generate.engine import device_of, inference

Item = tuple[Sequence[int], Sequence[int]]  # (ids, mask): mask[i] == 1 scores ids[i] given ids[:i]


def token_nll(model, items: Sequence[Item], *, batch_size: int = 16) -> list[tuple[float, int]]:
    """For each (ids, mask): (sum of -log p(ids[i] | ids[:i]) over the positions i >= 1 where mask[i] == 1, how many
    such positions). mask[0] has no context and is never scored. A sequence may be block_size + 1 tokens long:
    the model sees all but its last token, as in training."""
    block = model.cfg.block_size
    for i, (ids, mask) in enumerate(items):
        if len(ids) != len(mask):
            raise ValueError(f"item {i}: ids and mask differ in length ({len(ids)} vs {len(mask)})")
        if len(ids) > block + 1:
            raise OwnGPTError(f"item {i} is {len(ids)} tokens long but the model's context is {block} tokens; "
                              "score a shorter sequence")
    device = device_of(model)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))  # similar lengths together: less padding
    with inference(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            T = max(len(items[i][0]) for i in chunk)
            if T < 2:
                continue
            idx = torch.zeros(len(chunk), T, dtype=torch.long, device=device)  # (B, T)
            targets = torch.full((len(chunk), T - 1), -1, dtype=torch.long, device=device)  # (B, T-1), -1 = unscored
            for row, i in enumerate(chunk):
                ids, mask = items[i]
                ids_t = torch.tensor(list(ids), dtype=torch.long)
                idx[row, : len(ids)] = ids_t
                keep = torch.tensor([bool(v) for v in mask[1:]], dtype=torch.bool)
                targets[row, : len(ids) - 1] = torch.where(keep, ids_t[1:], -1)
            logits = model(idx[:, :-1]).float()  # (B, T-1, V): position t predicts idx[:, t + 1]
            nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-1, reduction="none")  # (B, T-1)
            sums, counts = nll.sum(dim=1).tolist(), (targets != -1).sum(dim=1).tolist()
            for row, i in enumerate(chunk):
                out[i] = (float(sums[row]), int(counts[row]))
    return out


def sequence_logprobs(model, items: Sequence[Item], *, batch_size: int = 16) -> list[float]:
    """Sum of log p over the mask == 1 targets of each (ids, mask) pair (the negative of `token_nll`'s sums)."""
    return [-nll for nll, _ in token_nll(model, items, batch_size=batch_size)]


def sequence_logprob(model, ids: Sequence[int], mask: Sequence[int]) -> float:
    """Sum of log p(ids[i] | ids[:i]) over the positions i >= 1 where mask[i] == 1 (mask[0] has no context)."""
    return sequence_logprobs(model, [(ids, mask)])[0]


def perplexity(items: Sequence[Item], model, *, batch_size: int = 16) -> dict[str, float]:
    """Mean negative log-likelihood per scored token ("loss"), its exp ("perplexity") and the token count."""
    scored = token_nll(model, items, batch_size=batch_size)
    nll, count = sum(n for n, _ in scored), sum(c for _, c in scored)
    mean = nll / max(count, 1)
    return {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "tokens": count, "nll": nll}
