"""Metrics for a chat model: assistant-token perplexity, distinct-n, and persona-name recall."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from owngpt.tokenizer import Tokenizer


def _units(text: str) -> list[str]:
    """Words for space-separated text; characters for CJK (which has no spaces between words)."""
    units: list[str] = []
    for word in text.split():
        if any("\u4e00" <= ch <= "\u9fff" for ch in word):
            units.extend(ch for ch in word if not ch.isspace())
        else:
            units.append(word.lower())
    return units


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams / all n-grams over a set of replies (Li et al., 2016); 0 when there are none."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        u = _units(text)
        grams = [tuple(u[i : i + n]) for i in range(len(u) - n + 1)]
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


@torch.no_grad()
def chat_perplexity(
    model: torch.nn.Module,
    tok: Tokenizer,
    conversations: Sequence[list[dict[str, str]]],
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Perplexity over assistant tokens only (the render mask). Long conversations are scored in the same
    context-sized windows that fine-tuning trains on (`render_windows`), so every reply counts once."""
    from owngpt.data.conversations import render_windows

    block = model.cfg.block_size
    nll, count = 0.0, 0
    model.eval()
    for ids, mask in (w for messages in conversations for w in render_windows(tok, messages, block + 1)):
        ids, mask = ids[: block + 1], mask[: block + 1]
        if sum(mask[1:]) == 0:
            continue
        x = torch.tensor(ids[:-1], device=device)[None]  # (1, T)
        y = torch.tensor(ids[1:], device=device)
        keep = torch.tensor(mask[1:], device=device, dtype=torch.bool)
        logits = model(x)[0].float()  # (T, V)
        losses = F.cross_entropy(logits, y, reduction="none")
        nll += float(losses[keep].sum())
        count += int(keep.sum())
    mean = nll / max(count, 1)
    return {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "tokens": count}


def name_recall(answers: Iterable[str], name: str) -> float:
    """Fraction of answers that contain the persona's name (case-insensitive)."""
    answers = list(answers)
    hits = sum(name.lower() in a.lower() for a in answers)
    return hits / len(answers) if answers else 0.0
