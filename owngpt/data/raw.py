"""Raw sources read outside `prepare` (`tokenizer train FILES`, `sft --data FILE`, `evaluate --data FILE`): cleaned
and scrubbed exactly as `prepare` cleans them, with the same per-filter counts.

`prepare` is not the only door into the pipeline: a tokenizer trained on raw files would learn vocabulary
entries from e-mail addresses and phone numbers, and a chat model fine-tuned on a raw dialogue file would learn
them as replies. Every path that reads raw text goes through `cleaned`, so what `prepare` promises (personal
data replaced by placeholders, control characters and odd whitespace normalised, empty texts dropped) holds
there too. Dedup and splits stay `prepare`'s: these paths read a corpus whole.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from owngpt.data.clean import CleanConfig, Cleaner
from owngpt.data.records import Conversation, Document, Record


def cleaned(records: Iterable[Record], cleaner: Cleaner | None = None) -> Iterator[Record]:
    """The records with documents cleaned as `prepare` cleans them (a document the filters remove is counted in
    `cleaner`'s report and not yielded) and every message's content cleaned as `prepare` cleans messages; Skips
    pass through. `cleaner` defaults to prepare's default settings."""
    cleaner = cleaner or Cleaner(CleanConfig())
    for r in records:
        if isinstance(r, Document):
            text, _ = cleaner(r.text, r.loc)
            if text is not None:
                yield Document(text, r.source, r.loc)
        elif isinstance(r, Conversation):
            yield Conversation([_message(m, r.loc, cleaner) for m in r.messages], r.source, r.loc)
        else:
            yield r


def _message(m: dict, loc: str, cleaner: Cleaner) -> dict:
    content = m.get("content")
    if not isinstance(content, str):  # left for the conversation check to report
        return m
    return {**m, "content": cleaner.message(content, loc)[0]}


def cleaning_summary(cleaner: Cleaner) -> dict[str, dict[str, int]]:
    """{filter: {"changed": n, "removed": n}} of what `cleaned` did (no examples: a summary for a log line)."""
    return {name: {"changed": f["changed"], "removed": f["removed"]} for name, f in cleaner.report().items()}


def describe(summary: dict[str, dict[str, int]]) -> str:
    """One line for the terminal from cleaning_summary(), e.g. 'cleaned as prepare does: pii_email changed 3;
    min_chars removed 1'."""
    parts = []
    for name, c in summary.items():
        counts = [f"{what} {c[what]}" for what in ("changed", "removed") if c.get(what)]
        if counts:
            parts.append(f"{name} {', '.join(counts)}")
    return "cleaned as prepare does: " + ("; ".join(parts) if parts else "nothing to change")
