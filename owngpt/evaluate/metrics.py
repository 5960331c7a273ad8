"""Metrics: perplexity and bits-per-byte (documents and assistant tokens), corpus BLEU (sacrebleu), distinct-n, and
persona-name recall.

Bits-per-byte divides the negative log-likelihood (in bits) of a text's tokens by the text's UTF-8 bytes, so models
with different tokenizers compare fairly: a tokenizer with longer tokens has fewer, harder predictions, and the
byte count does not care. Special tokens (<|endoftext|>, <|im_end|>, ...) carry no bytes and are left out of the
bits-per-byte sums (as nanochat does); the per-token perplexities include <|im_end|>, as the training loss does.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

from owngpt.generate.scoring import Item, perplexity, token_nll
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


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Negative log-likelihood in nats over `n_bytes` of text, as bits per byte (NaN without bytes)."""
    return nll_nats / (math.log(2) * n_bytes) if n_bytes else float("nan")


def text_only(tok: Tokenizer, items: Sequence[Item]) -> tuple[list[Item], int]:
    """The items with special tokens taken out of their masks, and the UTF-8 bytes of the tokens still scored (a
    mask's first position has no context and is never scored)."""
    special = set(tok.special_ids.values())
    out, n_bytes = [], 0
    for ids, mask in items:
        keep = [int(bool(m) and i > 0 and int(t) not in special) for i, (t, m) in enumerate(zip(ids, mask))]
        n_bytes += sum(len(tok.token_bytes(int(t))) for t, k in zip(ids, keep) if k)
        out.append((list(ids), keep))
    return out, n_bytes


def scored_bits(model: torch.nn.Module, tok: Tokenizer, items: Sequence[Item], *, batch_size: int = 16) -> dict:
    """Bits-per-byte of the text (non-special) tokens the items' masks select, scored by the one scoring function."""
    text_items, n_bytes = text_only(tok, items)
    scored = token_nll(model, text_items, batch_size=batch_size)
    nll = sum(n for n, _ in scored)
    return {"bits_per_byte": bits_per_byte(nll, n_bytes), "bytes": n_bytes, "text_tokens": sum(c for _, c in scored)}


def document_items(tok: Tokenizer, texts: Iterable[str], block_size: int) -> list[Item]:
    """Each document as prepare writes it (<|endoftext|> in front: the model sees a document start), cut into windows
    of block_size + 1 tokens that overlap by one, so every token after the first is scored exactly once."""
    items: list[Item] = []
    for text in texts:
        ids = [tok.eot_id, *tok.encode(text)]
        for start in range(0, max(1, len(ids) - 1), block_size):
            window = ids[start : start + block_size + 1]
            if len(window) > 1:
                items.append((window, [1] * len(window)))
    return items


def document_scores(model: torch.nn.Module, tok: Tokenizer, texts: Sequence[str], *, batch_size: int = 16) -> dict:
    """Loss and perplexity per text token, and bits-per-byte, of documents (see document_items)."""
    text_items, n_bytes = text_only(tok, document_items(tok, texts, model.cfg.block_size))
    scored = token_nll(model, text_items, batch_size=batch_size)
    nll, count = sum(n for n, _ in scored), sum(c for _, c in scored)
    loss = nll / max(count, 1)
    return {"documents": len(texts), "tokens": count, "bytes": n_bytes, "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)), "bits_per_byte": bits_per_byte(nll, n_bytes)}


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """Corpus BLEU of replies against one reference each, computed by sacrebleu: its `zh` tokenisation when the
    references are mostly Chinese, else its default (13a). Returns the score and sacrebleu's signature."""
    try:
        import sacrebleu
    except ImportError:
        from owngpt.errors import OwnGPTError

        raise OwnGPTError('BLEU needs sacrebleu, which owngpt depends on: pip install sacrebleu') from None
    text = "".join(references)
    han = sum(is_han(ch) for ch in text)
    letters = sum(ch.isalpha() for ch in text)
    tokenize = "zh" if letters and han / letters > 0.5 else "13a"
    metric = sacrebleu.metrics.BLEU(tokenize=tokenize)
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return {"bleu": result.score, "signature": str(metric.get_signature()), "tokenize": tokenize}


def chat_items(tok: Tokenizer, conversations: Sequence[list[dict[str, str]]], block_size: int) -> list[Item]:
    """The assistant-masked (ids, mask) windows of conversations, as fine-tuning trains on them (`render_windows`)."""
    from owngpt.data.conversations import render_windows

    return [(ids[: block_size + 1], mask[: block_size + 1])
            for messages in conversations for ids, mask in render_windows(tok, messages, block_size + 1)]


def chat_perplexity(model: torch.nn.Module, tok: Tokenizer, conversations: Sequence[list[dict[str, str]]],
                    *, batch_size: int = 16) -> dict[str, float]:
    """Perplexity over assistant tokens only (the render mask), scored by the one scoring function. Long
    conversations are scored in the same context-sized windows that fine-tuning trains on (`render_windows`), so
    every reply counts once."""
    result = perplexity(chat_items(tok, conversations, model.cfg.block_size), model, batch_size=batch_size)
    return {"loss": result["loss"], "perplexity": result["perplexity"], "tokens": result["tokens"]}


def name_recall(answers: Iterable[str], name: str) -> float:
    """Fraction of answers that contain the persona's name (case-insensitive)."""
    answers = list(answers)
    hits = sum(name.lower() in a.lower() for a in answers)
    return hits / len(answers) if answers else 0.0
