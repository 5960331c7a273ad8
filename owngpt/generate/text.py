"""Generated ids as text: incremental UTF-8 decoding (complete characters only), stop strings and the content filter.

Stop strings are matched on the decoded text, also across token boundaries; the text is cut before the string.
A streamed text holds back any tail that could still become a stop string, so the concatenation of its pieces
is exactly the text a batched generation returns. A content filter (owngpt/generate/moderation.py) cuts the text
the same way, before its first match, and holds back its last `hold` characters while the text may still grow.
"""

from __future__ import annotations

import codecs
from typing import Sequence

from owngpt.generate.moderation import ContentFilter


class TextTracker:
    """Incremental text of one generated row: complete UTF-8 characters only, cut before the first stop string
    (reason "stop") or content-filter match (reason "content_filter")."""

    def __init__(self, tokenizer, stop: Sequence[str], content_filter: ContentFilter | None = None) -> None:
        self.tokenizer, self.stop, self.filter = tokenizer, list(stop), content_filter
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.cut: int | None = None  # index of the earliest stop string (or filtered text) in text
        self.reason: str | None = None  # why the text was cut: "stop" or "content_filter"
        self.longest = max((len(s) for s in self.stop), default=0)

    def feed(self, token: int) -> None:
        before = len(self.text)
        self.text += self.decoder.decode(self.tokenizer.token_bytes(token))
        self._search(before, final=False)

    def finish(self) -> None:
        before = len(self.text)
        self.text += self.decoder.decode(b"", final=True)  # an incomplete last character becomes U+FFFD
        self._search(before, final=True)

    def _search(self, before: int, final: bool) -> None:
        if self.cut is not None or (len(self.text) == before and not final):
            return
        hits = []
        if self.stop:
            start = max(0, before - self.longest + 1)  # a match must end in the new text
            hits = [(i, "stop") for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if self.filter is not None and (i := self.filter.find(self.text, final)) is not None:
            hits.append((i, "content_filter"))
        if hits:
            self.cut, self.reason = min(hits)

    @property
    def stopped(self) -> bool:
        return self.cut is not None

    def result(self) -> str:
        return self.text if self.cut is None else self.text[: self.cut]

    def safe_end(self) -> int:
        """How much of the text can be shown now: up to a stop string, or before a tail that may become one."""
        if self.cut is not None:
            return self.cut
        hold = self.filter.hold if self.filter is not None else 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        return max(0, len(self.text) - hold)


def text_of(tokenizer, ids: Sequence[int], stop: Sequence[str]) -> str:
    tracker = TextTracker(tokenizer, stop)
    for t in ids:
        tracker.feed(t)
        if tracker.stopped:
            break
    tracker.finish()
    return tracker.result()


def has_stop(tokenizer, seq: list[int], stop: Sequence[str]) -> bool:
    """Whether the text of `seq` contains a stop string (beam search checks each candidate afresh)."""
    tracker = TextTracker(tokenizer, stop)
    for t in seq:
        tracker.feed(t)
    return tracker.stopped
