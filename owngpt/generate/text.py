"""Generated ids as text: incremental UTF-8 decoding (complete characters only) and stop strings.

Stop strings are matched on the decoded text, also across token boundaries; the text is cut before the string.
A streamed text holds back any tail that could still become a stop string, so the concatenation of its pieces
is exactly the text a batched generation returns.
"""

from __future__ import annotations

import codecs
from typing import Sequence


class TextTracker:
    """Incremental text of one generated row: complete UTF-8 characters only, the first stop string found."""

    def __init__(self, tokenizer, stop: Sequence[str]) -> None:
        self.tokenizer, self.stop = tokenizer, list(stop)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.cut: int | None = None  # index of the earliest stop string in text
        self.longest = max((len(s) for s in self.stop), default=0)

    def feed(self, token: int) -> None:
        before = len(self.text)
        self.text += self.decoder.decode(self.tokenizer.token_bytes(token))
        self._search(before)

    def finish(self) -> None:
        before = len(self.text)
        self.text += self.decoder.decode(b"", final=True)  # an incomplete last character becomes U+FFFD
        self._search(before)

    def _search(self, before: int) -> None:
        if self.cut is not None or not self.stop or len(self.text) == before:
            return
        start = max(0, before - self.longest + 1)  # a match must end in the new text
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.cut = min(hits)

    @property
    def stopped(self) -> bool:
        return self.cut is not None

    def result(self) -> str:
        return self.text if self.cut is None else self.text[: self.cut]

    def safe_end(self) -> int:
        """How much of the text can be shown now: up to a stop string, or before a tail that may become one."""
        if self.cut is not None:
            return self.cut
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        return len(self.text) - hold


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
