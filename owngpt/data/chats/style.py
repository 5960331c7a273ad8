"""How a set of messages is written: length, emoji, punctuation and casing rates, and the phrases used most.

`text_style(texts)` describes a person's messages (for `owngpt persona suggest`) and a model's replies (for the style
evaluation, owngpt/evaluate/style.py), so both are measured by one definition:

  chars        length in characters: mean, median, 90th percentile, and the share in each of the LENGTH_BINS
  emoji        share of messages with at least one emoji (Unicode pictographs, or WeChat/QQ codes such as [微笑]),
               and emoji per message
  question, exclamation, ellipsis, tilde, laugh   share of messages holding ? ／？, ! ／！, ... … 。。, ~ ～, and
               haha / lol / 哈哈 / 233
  end_punct    share of messages ending in punctuation
  lower_start  among messages that start with a Latin letter, the share that start lower-case
  multi_line   share of messages with more than one line (several messages merged into one turn)

Not handled: emoticons made of punctuation (":-)"), emoji written as :shortcodes:, sarcasm.
"""

from __future__ import annotations

import re
from collections import Counter
from statistics import median
from typing import Iterable, Sequence

from owngpt.lang import has_han

LENGTH_BINS = (1, 4, 8, 16, 32, 64, 128)  # the lower edges (characters) of the length histogram's buckets
EMOJI = re.compile("[\U0001F300-\U0001F5FF\U0001F600-\U0001F64F\U0001F680-\U0001F6FF\U0001F900-\U0001FAFF"
                   "\u2600-\u27BF\u2B50\u2B55\u2764]|\\[[\u4e00-\u9fff]{1,4}\\]")
RATES = {
    "question": re.compile("[?？]"),
    "exclamation": re.compile("[!！]"),
    "ellipsis": re.compile(r"\.\.\.|…|。。"),
    "tilde": re.compile("[~～]"),
    "laugh": re.compile(r"(?i)\b(?:(?:ha){2,}h?|(?:he){2,}|lol+|lmao|rofl)\b|哈哈|呵呵|嘿嘿|嘻嘻|233"),
}
_END = re.compile(r"[.!?。！？~～…)）]$")


def length_bucket(n: int) -> int:
    """Index of the LENGTH_BINS bucket that a message of n characters falls in."""
    return max(i for i, lo in enumerate(LENGTH_BINS) if n >= lo) if n >= 1 else 0


def text_style(texts: Sequence[str]) -> dict:
    """The statistics of the module docstring for these messages (zeros for none)."""
    texts = [t.strip() for t in texts if t and t.strip()]
    n = len(texts)
    lengths = sorted(len(t) for t in texts)
    out: dict = {"messages": n}
    if not n:
        return {**out, "chars_mean": 0.0, "chars_median": 0.0, "chars_p90": 0.0,
                "length_hist": [0.0] * len(LENGTH_BINS), "emoji": 0.0, "emoji_per_message": 0.0,
                **{k: 0.0 for k in RATES}, "end_punct": 0.0, "lower_start": 0.0, "multi_line": 0.0}
    hist = Counter(length_bucket(x) for x in lengths)
    latin = [t for t in texts if t[0].isascii() and t[0].isalpha()]
    emoji = [len(EMOJI.findall(t)) for t in texts]
    out.update(
        chars_mean=sum(lengths) / n, chars_median=float(median(lengths)),
        chars_p90=float(lengths[min(n - 1, int(0.9 * n))]),
        length_hist=[hist.get(i, 0) / n for i in range(len(LENGTH_BINS))],
        emoji=sum(1 for e in emoji if e) / n, emoji_per_message=sum(emoji) / n,
        **{k: sum(1 for t in texts if p.search(t)) / n for k, p in RATES.items()},
        end_punct=sum(1 for t in texts if _END.search(t)) / n,
        lower_start=sum(1 for t in latin if t[0].islower()) / len(latin) if latin else 0.0,
        multi_line=sum(1 for t in texts if "\n" in t) / n,
    )
    return out


RATE_KEYS = ("emoji", *RATES, "end_punct", "lower_start", "multi_line")  # the shares text_style gives, in [0, 1]
_WORD = re.compile(r"[A-Za-z']+|[\u4e00-\u9fff]+")


def frequent_phrases(texts: Iterable[str], most: int = 8, min_count: int = 3) -> list[tuple[str, int]]:
    """The phrases a person uses most: English word 2-3-grams and Chinese 2-4-character runs, seen at least
    `min_count` times, longer ones first where they are about as frequent as a phrase they contain."""
    counts: Counter = Counter()
    for text in texts:
        for run in _WORD.findall(text.lower()):
            if has_han(run):
                counts.update({run[i:i + n] for n in (2, 3, 4) for i in range(len(run) - n + 1)})
        words = re.findall(r"[a-z']+", text.lower())
        counts.update({" ".join(words[i:i + n]) for n in (2, 3) for i in range(len(words) - n + 1)})
    scored = sorted(((c * len(p) ** 0.5, p, c) for p, c in counts.items() if c >= min_count and len(p) >= 2),
                    reverse=True)
    picked: list[tuple[str, int]] = []
    for _, phrase, count in scored:
        if any(phrase in p and count <= 1.2 * c for p, c in picked):
            continue  # a part of a phrase already picked
        picked = [(p, c) for p, c in picked if not (p in phrase and c <= 1.2 * count)] + [(phrase, count)]
        if len(picked) >= most:
            break
    return picked
