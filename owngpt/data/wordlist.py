"""Word and pattern lists (a YAML file of `words` and `patterns`, Chinese and English) and THE matcher for them.

Two uses share this one matcher and file format: the output content filter (owngpt/generate/moderation.py cuts a
reply before the first match) and the block list of chat exports (owngpt/data/chats/ drops every message that
matches, before anything is trained on).

    words: [darn, 笨蛋]            # case-insensitive; Latin words match whole words only, Chinese ones anywhere
    patterns: ['\\b\\d{3}-\\d{4}\\b']  # Python regular expressions, case-insensitive
    hold: 32                       # (content filter only) characters a stream holds back

Not handled: meaning (only listed strings), spelling tricks (l33t, spaces inside a word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from owngpt.config import unknown_key
from owngpt.errors import OwnGPTError

PATTERN_HOLD = 32  # characters held back for pattern matches when the file does not say


def _word_regex(word: str) -> str:
    """A word as a regex: whole-word at an edge that is a Latin letter or digit (so "ass" is not found in
    "class"), anywhere at a Chinese edge (Chinese has no spaces between words)."""
    edge = lambda ch: ch.isascii() and ch.isalnum()  # noqa: E731
    before = r"(?<![A-Za-z0-9])" if edge(word[0]) else ""
    after = r"(?![A-Za-z0-9])" if edge(word[-1]) else ""
    return before + re.escape(word) + after


@dataclass(frozen=True)
class ContentFilter:
    """Listed words and patterns; `find` gives where the first match starts."""

    words: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    hold: int = 0  # characters a stream holds back (at least the longest word + 1)
    source: str = "inline"
    _regex: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [_word_regex(w) for w in self.words] + [f"(?:{p})" for p in self.patterns]
        object.__setattr__(self, "_regex", re.compile("|".join(parts), re.IGNORECASE) if parts else None)
        longest = max((len(w) for w in self.words), default=-1) + 1
        object.__setattr__(self, "hold", max(self.hold, longest))

    def find(self, text: str, final: bool = True) -> int | None:
        """Where the first match in `text` starts, or None. With final=False (more text may follow) a match that
        reaches the end of the text does not count yet: it may still grow, or lose its word boundary."""
        if self._regex is None:
            return None
        for m in self._regex.finditer(text):
            if final or m.end() < len(text):
                return m.start()
        return None


def load_word_list(path: str | Path, what: str = "word list") -> ContentFilter:
    """A YAML file of `words`, `patterns` and `hold`; mistakes name `what` (e.g. "moderation list"), the file and
    the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise OwnGPTError(f"{what} {path} does not exist (give a YAML file, or 'default')") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise OwnGPTError(f"{what} {path}: not a readable YAML file ({e})") from None
    if not isinstance(data, dict):
        raise OwnGPTError(f"{what} {path}: expected a mapping with 'words' and/or 'patterns'")
    for key in data:
        if key not in ("words", "patterns", "hold"):
            raise unknown_key(key, ["words", "patterns", "hold"], f"{what} {path}")
    lists = {}
    for key in ("words", "patterns"):
        items = data.get(key) or []
        if not isinstance(items, list) or not all(isinstance(x, str) and x.strip() for x in items):
            raise OwnGPTError(f"{what} {path}: '{key}' must be a list of non-empty strings")
        lists[key] = tuple(x.strip() if key == "words" else x for x in items)
    for i, pattern in enumerate(lists["patterns"]):
        try:
            re.compile(pattern)
        except re.error as e:
            raise OwnGPTError(f"{what} {path}: patterns[{i}] {pattern!r} is not a valid regular "
                              f"expression ({e})") from None
    hold = data.get("hold", PATTERN_HOLD if lists["patterns"] else 0)
    if isinstance(hold, bool) or not isinstance(hold, int) or hold < 0:
        raise OwnGPTError(f"{what} {path}: 'hold' must be an integer >= 0, not {hold!r}")
    if not lists["words"] and not lists["patterns"]:
        raise OwnGPTError(f"{what} {path} lists no words and no patterns")
    return ContentFilter(lists["words"], lists["patterns"], hold, source=str(path))
