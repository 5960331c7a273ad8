"""Does it sound like me? The style of a model's replies against my real replies, side by side with other models
(the base model before fine-tuning) and other people's real messages.

At held-out points of my conversations (the context just before one of my replies: every conversation's first
reply first, then the second, ...) each model replies through the one reply path (owngpt.chat.reply, as `owngpt
chat` would, with chat's sampling settings), and every set of texts, my real replies included, is described the
same way (owngpt/data/chats/style.py: length, emoji, punctuation, casing) plus distinct-1/2, on the same number
of texts. Each row then gets its distance to my real replies:

  length_js     Jensen-Shannon divergence (base 2, 0 = same, 1 = disjoint) of the length histograms
  rates_l1      mean absolute difference of the share features (emoji, ?, !, ..., ~, laughter, end punctuation,
                lower-case starts, several lines)
  char3_cosine  cosine similarity of the character 3-gram counts (1 = the same mix of letters, words, emoji)
  distance      the mean of length_js, rates_l1 and 1 - char3_cosine: 0 = indistinguishable by these measures

and each model its assistant-token perplexity on the held-out conversations (owngpt.generate.scoring through
evaluate.metrics.chat_perplexity). These measure style, not meaning: a model can sound like me and still talk
nonsense.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

from owngpt.chat.settings import chat_generation_config
from owngpt.data.chats.style import LENGTH_BINS, RATE_KEYS, text_style
from owngpt.evaluate.chat_eval import ChatEvalConfig, Messages, sample_replies
from owngpt.evaluate.metrics import chat_perplexity, distinct_n

ME = "me (held-out)"


def style_config(samples: int = 100, seed: int = 0) -> ChatEvalConfig:
    """Chat's sampling settings with room for a long message (at most half the context, as every reply)."""
    return ChatEvalConfig(samples=samples, seed=seed, generation=chat_generation_config(max_new_tokens=96))


def reply_points(conversations: Sequence[Messages], n: int) -> list[tuple[Messages, str]]:
    """Up to n (the messages before one of my replies, that reply): the first reply of every conversation, then
    the second of every conversation, and so on, so that the points spread over all conversations."""
    per: list[list[tuple[Messages, str]]] = []
    for messages in conversations:
        per.append([(list(messages[:i]), m["content"]) for i, m in enumerate(messages)
                    if m["role"] == "assistant" and i > 0 and messages[i - 1]["role"] == "user"])
    points: list[tuple[Messages, str]] = []
    for depth in range(max((len(p) for p in per), default=0)):
        points += [p[depth] for p in per if depth < len(p)]
        if len(points) >= n:
            break
    return points[:n]


def char_ngrams(texts: Sequence[str], n: int = 3) -> Counter:
    """Character n-gram counts over the texts (each text on its own, lower-cased)."""
    grams: Counter = Counter()
    for t in texts:
        t = t.lower()
        grams.update(t[i:i + n] for i in range(len(t) - n + 1))
    return grams


def cosine(a: Counter, b: Counter) -> float:
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence of two distributions, in bits (0 to 1)."""
    def kl(a: Sequence[float], m: Sequence[float]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(a, m) if x > 0)

    mid = [(x + y) / 2 for x, y in zip(p, q)]
    return max(0.0, (kl(p, mid) + kl(q, mid)) / 2) if sum(p) and sum(q) else 1.0


def compare_style(texts: dict[str, list[str]], reference: str = ME) -> dict[str, Any]:
    """Every set of texts described (style, distinct-1/2) and its distance to `reference`'s, each set cut to the
    size of the smallest so that distinct-n compares fairly."""
    n = min((len(v) for v in texts.values()), default=0)
    sets = {name: list(v[:n]) for name, v in texts.items()}
    ref_style, ref_grams = text_style(sets[reference]), char_ngrams(sets[reference])
    rows = {}
    for name, values in sets.items():
        style = text_style(values)
        length_js = js_divergence(style["length_hist"], ref_style["length_hist"])
        rates = sum(abs(style[k] - ref_style[k]) for k in RATE_KEYS) / len(RATE_KEYS)
        char3 = cosine(char_ngrams(values), ref_grams)
        rows[name] = {**style, "distinct_1": distinct_n(values, 1), "distinct_2": distinct_n(values, 2),
                      "length_js": length_js, "rates_l1": rates, "char3_cosine": char3,
                      "distance": (length_js + rates + (1 - char3)) / 3}
    return {"reference": reference, "texts": n, "length_bins": list(LENGTH_BINS), "rows": rows}


def evaluate_style(models: dict[str, Any], conversations: Sequence[Messages], cfg: ChatEvalConfig | None = None,
                   *, others: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Replies of each model (name -> object with .model, .tokenizer, .system: chat.reply.ReplyModel) at held-out
    points of `conversations`, compared with my real replies there and with `others` (name -> real texts of other
    people); each model's assistant-token perplexity on the conversations too."""
    cfg = cfg or style_config()
    points = reply_points(conversations, cfg.samples)
    texts: dict[str, list[str]] = {ME: [reply for _, reply in points]}
    perplexity = {}
    for name, m in models.items():
        # the same seed for every model: differences come from the models, not the draws
        texts[name] = sample_replies(m.model, m.tokenizer, [context for context, _ in points], cfg,
                                     system=m.system)
        perplexity[name] = chat_perplexity(m.model, m.tokenizer, conversations)
    texts.update(others or {})
    result = compare_style(texts)
    result["perplexity"] = perplexity
    result["points"] = len(points)
    result["examples"] = [{"context": context[-1]["content"], ME: reply, **{k: texts[k][i] for k in models}}
                          for i, (context, reply) in enumerate(points[:5])]
    return result
