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

from owngpt.data.pii import PLACEHOLDER
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

# Words and characters that carry no voice of their own: a phrase made only of them ("i am", "it is", "我们的") is
# not one worth quoting.
STOP_WORDS = frozenset("""
a about after again all also am an and any are as at be been but by can could did do does doing for from had has have
having he her here him his how i i'm if in into is it it's its just me my no not now of off on one or our out over
she so some than that that's the their them then there these they this those to too up us very was we were what
when where which who why will with would you you're your
""".split())
STOP_CHARS = frozenset("的了是我你他她它们在也就都和吗呢吧啊这那个有不一")
MAX_UNITS = {"en": 5, "zh": 8}  # the longest phrase looked for: words, characters
CANDIDATES = 200  # the best-scored phrases among which the picks are made
_RUN = re.compile(r"[A-Za-z']+(?:\s+[A-Za-z']+)*|[\u4e00-\u9fff]+")


def _units(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """The runs of a message a phrase can come from, as (language, units): English words (lower-case) and
    Chinese characters. Placeholders of scrubbed values (<PHONE>) and everything else break runs."""
    runs = []
    for run in _RUN.findall(PLACEHOLDER.sub("|", text).lower()):
        units = tuple(run) if has_han(run) else tuple(run.split())
        runs.append(("zh" if has_han(run) else "en", units))
    return runs


def _join(lang: str, units: tuple[str, ...]) -> str:
    return "".join(units) if lang == "zh" else " ".join(units)


def _informative(lang: str, units: tuple[str, ...]) -> bool:
    stop = STOP_CHARS if lang == "zh" else STOP_WORDS
    return any(u not in stop for u in units)


def frequent_phrases(texts: Iterable[str], most: int = 8, min_count: int = 3) -> list[tuple[str, int]]:
    """The phrases a person uses most: runs of 2 or more English words or Chinese characters, each counted once per
    message, seen in at least `min_count` messages. A phrase is left out when it is made of stop words only ("i
    am"), or when it is a fragment of a longer phrase found about as often ("good to" of "sounds good to me"), or
    when its messages are mostly those of a phrase picked already that it overlaps (fragments of one sentence)."""
    messages = [_units(t) for t in texts]
    counts: Counter = Counter()
    level = None  # the frequent phrases one unit shorter (a longer phrase is frequent only if both its parts are)
    for n in range(2, max(MAX_UNITS.values()) + 1):
        found: Counter = Counter()
        for runs in messages:
            found.update({(lang, u[i:i + n]) for lang, u in runs if n <= MAX_UNITS[lang]
                          for i in range(len(u) - n + 1)
                          if level is None or ((lang, u[i:i + n - 1]) in level and (lang, u[i + 1:i + n]) in level)})
        level = {k for k, c in found.items() if c >= min_count}
        if not level:
            break
        counts.update({k: found[k] for k in level})
    # a phrase inside a longer one found in nearly as many messages is a fragment of it
    fragments = {(lang, part) for (lang, u), c in counts.items() if len(u) > 2 for part in (u[1:], u[:-1])
                 if c >= 0.8 * counts[(lang, part)]}
    scored = sorted(((c * len(_join(*k)) ** 0.5, k, c) for k, c in counts.items()
                     if k not in fragments and _informative(*k)), reverse=True)[:CANDIDATES]
    where = _messages_of({k for _, k, _ in scored}, messages)
    picked: list[tuple[tuple[str, tuple[str, ...]], int]] = []
    for _, key, count in scored:
        if any(_overlap(key[1], p[1]) and len(where[key] & where[p]) > 0.5 * count for p, _ in picked):
            continue
        picked.append((key, count))
        if len(picked) >= most:
            break
    return [(_join(*k), c) for k, c in picked]


def _messages_of(keys: set, messages: list) -> dict:
    """{phrase: the indices of the messages holding it}."""
    where: dict = {k: set() for k in keys}
    lengths = {len(k[1]) for k in keys}
    for i, runs in enumerate(messages):
        for lang, u in runs:
            for n in lengths:
                for j in range(len(u) - n + 1):
                    if (lang, u[j:j + n]) in where:
                        where[(lang, u[j:j + n])].add(i)
    return where


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two phrases share units at an end: one holds the other, or one ends with the other's start."""
    if _holds(a, b) or _holds(b, a):
        return True
    return any(a[-k:] == b[:k] or b[-k:] == a[:k] for k in range(1, min(len(a), len(b))))


def _holds(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return any(a[i:i + len(b)] == b for i in range(len(a) - len(b) + 1))
