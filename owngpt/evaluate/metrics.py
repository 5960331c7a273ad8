"""Metrics for a chat model: assistant-token perplexity, distinct-n, and persona-name recall."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from owngpt.generate.scoring import perplexity
from owngpt.lang import is_han
from owngpt.tokenizer import Tokenizer


def _units(text: str) -> list[str]:
    """Words for space-separated text; characters for CJK (which has no spaces between words)."""
    units: list[str] = []
    for word in text.split():
        if any(is_han(ch) for ch in word):
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


def chat_perplexity(model: torch.nn.Module, tok: Tokenizer, conversations: Sequence[list[dict[str, str]]],
                    *, batch_size: int = 16) -> dict[str, float]:
    """Perplexity over assistant tokens only (the render mask), scored by the one scoring function. Long
    conversations are scored in the same context-sized windows that fine-tuning trains on (`render_windows`), so
    every reply counts once."""
    from owngpt.data.conversations import render_windows

    block = model.cfg.block_size
    items = [(ids[: block + 1], mask[: block + 1])
             for messages in conversations for ids, mask in render_windows(tok, messages, block + 1)]
    result = perplexity(items, model, batch_size=batch_size)
    return {"loss": result["loss"], "perplexity": result["perplexity"], "tokens": result["tokens"]}


def name_recall(answers: Iterable[str], name: str) -> float:
    """Fraction of answers that contain the persona's name (case-insensitive)."""
    answers = list(answers)
    hits = sum(name.lower() in a.lower() for a in answers)
    return hits / len(answers) if answers else 0.0
