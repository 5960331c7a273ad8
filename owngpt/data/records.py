"""The three things a reader yields: a document, a conversation, or a reported skip of a bad record."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Document:
    """One piece of plain text. `loc` says where it came from, e.g. 'notes/a.txt' or 'data.jsonl:17'."""

    text: str
    source: str
    loc: str


@dataclass
class Conversation:
    """A dialogue kept with its structure: messages are {'role': system|user|assistant, 'content': str}."""

    messages: list[dict[str, str]] = field(default_factory=list)
    source: str = ""
    loc: str = ""


@dataclass
class Skip:
    """A record that could not be used, with the reason; counted and reported, never silently dropped."""

    source: str
    loc: str
    reason: str


Record = Document | Conversation | Skip


def reason_kind(reason: str) -> str:
    """What went wrong, without where: the reason with its leading "file:line: " / "line N: " and the numbers that
    differ from record to record (byte offsets, columns, message indices) replaced by N, so that skips group by
    cause. Names that carry digits stay whole ("UTF-8", "GB18030"), and nothing after a colon is cut off:
    'x.jsonl:17: invalid JSON: Expecting value at column 5' -> 'invalid JSON: Expecting value at column N';
    "'messages' message 3: unknown role 'narrator' (...)" -> "'messages' message N: unknown role 'narrator' (...)"."""
    r = reason
    while (m := re.match(r"(?:\S+?:\d+|line \d+): ", r)) is not None:
        r = r[m.end():]
    r = re.sub(r"(?<![\w.\-])\d+(?![\w.\-])", "N", r)
    return r.strip()[:160]
