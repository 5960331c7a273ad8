"""The output content filter: word and pattern lists (a YAML file, Chinese and English) that end a reply before the
first match, with finish_reason "content_filter". `owngpt chat --moderation` and `owngpt serve --moderation` use it;
it is off unless asked for.

    # my-filter.yaml
    words: [darn, 笨蛋]            # case-insensitive; Latin words match whole words only, Chinese ones anywhere
    patterns: ['\\b\\d{3}-\\d{4}\\b']  # Python regular expressions, case-insensitive
    hold: 32                       # characters a stream holds back so a pattern match is never half-sent

`default` names the small list shipped with owngpt (owngpt/generate/moderation_default.yaml: strong profanity and
insults in both languages). A streamed reply holds back its last `hold` characters (words: the longest word, plus
one for the boundary) until more text or the end arrives, so text the filter cuts is never sent; a pattern whose
matches can be longer than `hold` may have its start sent before it is caught.

Not handled: meaning (only listed strings), spelling tricks (l33t, spaces inside a word), the user's own messages.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from owngpt.data.wordlist import PATTERN_HOLD, ContentFilter, load_word_list  # noqa: F401 (this module's interface)

DEFAULT_FILE = Path(__file__).with_name("moderation_default.yaml")


def load_content_filter(spec: str | Path) -> ContentFilter:
    """`default` (the shipped list) or a YAML file of `words`, `patterns` and `hold` (owngpt/data/wordlist.py);
    mistakes name the file and key."""
    if str(spec) == "default":
        return replace(load_word_list(DEFAULT_FILE, "moderation list"), source="default")
    return load_word_list(spec, "moderation list")
