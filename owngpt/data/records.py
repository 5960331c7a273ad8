"""The three things a reader yields: a document, a conversation, or a reported skip of a bad record."""

from __future__ import annotations

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
