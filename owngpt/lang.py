"""Which writing system a text uses: THE definition of a Han (Chinese) character, and zh/en from it.

Every stage that asks "is this Chinese?" asks here: the tokenizer's chars/token report, the encoding sniffer of
the data readers, the persona's per-language fields and the evaluation's character units.

HAN covers the CJK Unified Ideographs (U+4E00-9FFF), Extension A (U+3400-4DBF) and the CJK Compatibility
Ideographs (U+F900-FAFF). Not handled: Extensions B and later (U+20000 and up, rare outside names and classical
texts), kana and hangul (Japanese and Korean are neither 'zh' nor 'en' here).
"""

from __future__ import annotations

import re

# (first, last) code points, inclusive.
HAN: tuple[tuple[int, int], ...] = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF))

_HAN_RUN = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in HAN) + "]")


def is_han(ch: str) -> bool:
    """True when the one character `ch` is a Han character (see HAN)."""
    c = ord(ch)
    return any(lo <= c <= hi for lo, hi in HAN)


def count_han(text: str) -> int:
    """How many Han characters `text` holds."""
    return len(_HAN_RUN.findall(text))


def has_han(text: str) -> bool:
    """True when `text` holds at least one Han character."""
    return _HAN_RUN.search(text) is not None


def language(text: str) -> str | None:
    """'zh' when Han characters outnumber ASCII letters, 'en' when there are ASCII letters, else None."""
    han = count_han(text)
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    if han and han >= latin:
        return "zh"
    return "en" if latin else None
