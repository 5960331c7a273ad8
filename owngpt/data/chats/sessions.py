"""Messages → training conversations: sessions by silence, turns by speaker, my turns as the assistant's.

For each chat of an export (a contact, a group), in time order:
  1. a new session starts after a silence longer than `ChatOptions.session_gap` (a gap exactly equal to it does not
     split);
  2. consecutive messages of one side are merged into one turn, joined by newlines: my messages become an
     assistant turn, everyone else's a user turn. In a group chat (groups="names") each run of another speaker's
     messages in a user turn starts with "Name: ", so the model sees who said what; groups="merge" leaves the names
     out and groups="skip" leaves group chats out;
  3. my messages before anyone else wrote in a session have nothing to reply to: they are left out (counted); a
     session with no reply from me is left out (counted). A session left out is counted once, under one reason:
     OPENER when it holds only my messages, else NO_REPLY. Everything else is one Conversation, so the loss is on
     what I wrote and other people's words are only context.
A message the block list matches is dropped whole before any of this, and so is everything `Dropped` (media,
system lines). Very long sessions are kept whole here: fine-tuning cuts them into context-sized windows at turn
boundaries (owngpt/data/conversations.render_windows), as it does every long conversation.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Iterator

from owngpt.data.chats.model import ChatOptions, Dropped, Message, Parsed
from owngpt.data.records import Conversation, Record, Skip
from owngpt.data.wordlist import ContentFilter

OPENER = "my messages that open a session (nothing to reply to)"
NO_REPLY = "session with no reply from me"
BLOCKED = "blocked by the block list"
GROUP_SKIPPED = "group chat (left out: --groups skip)"


@dataclass
class Turn:
    """Consecutive messages of one side: mine (assistant) or others' (user)."""

    mine: bool
    line: int
    parts: list[tuple[str, str]] = field(default_factory=list)  # (speaker, text)

    def text(self, names: bool) -> str:
        if not names:
            return "\n".join(t for _, t in self.parts)
        out: list[str] = []
        last = None
        for speaker, text in self.parts:
            out.append(text if speaker == last else f"{speaker}: {text}")
            last = speaker
        return "\n".join(out)


def split_sessions(messages: list[Message], gap: float) -> list[list[Message]]:
    """Messages of one chat (time order) cut where the silence between two is longer than `gap` seconds."""
    sessions: list[list[Message]] = []
    for m in messages:
        if sessions and m.time - sessions[-1][-1].time <= gap:
            sessions[-1].append(m)
        else:
            sessions.append([m])
    return sessions


def turns_of(session: list[Message]) -> list[Turn]:
    """Consecutive messages of one side merged into turns."""
    turns: list[Turn] = []
    for m in session:
        if not turns or turns[-1].mine != bool(m.mine):
            turns.append(Turn(bool(m.mine), m.line))
        turns[-1].parts.append((m.speaker, m.text))
    return turns


def is_blocked(text: str, words: ContentFilter) -> bool:
    """Whether the block list matches a message, as written or as NFKC folds it (full-width forms)."""
    return words.find(text) is not None or words.find(unicodedata.normalize("NFKC", text)) is not None


def blocked(parsed: Parsed, opts: ChatOptions) -> set[int]:
    """Indices of the messages the block list matches (see is_blocked)."""
    words = opts.block_filter()
    if words is None:
        return set()
    return {i for i, m in enumerate(parsed.items) if isinstance(m, Message) and is_blocked(m.text, words)}


def session_records(parsed: Parsed, source: str, opts: ChatOptions) -> Iterator[Record]:
    """An export's records (owner already resolved): a Skip for every dropped message and every session left out
    (with its file:line), a Conversation for every session with a reply of mine."""
    hidden = blocked(parsed, opts)
    chats: dict[str, list[Message]] = {}
    for i, item in enumerate(parsed.items):
        if isinstance(item, Dropped):
            yield Skip(source, parsed.loc(item.line), item.reason)
        elif i in hidden:
            yield Skip(source, parsed.loc(item.line), BLOCKED)
        else:
            chats.setdefault(item.chat, []).append(item)
    for messages in chats.values():
        messages.sort(key=lambda m: m.time)  # stable: messages of one second keep their file order
        for session in split_sessions(messages, opts.session_gap):
            yield from _session(session, parsed, source, opts)


def _session(session: list[Message], parsed: Parsed, source: str, opts: ChatOptions) -> Iterator[Record]:
    group = session[0].group
    if group and opts.groups == "skip":
        yield Skip(source, parsed.loc(session[0].line), GROUP_SKIPPED)
        return
    turns = turns_of(session)
    replies = turns[1:] if turns[0].mine else turns
    if not any(t.mine for t in replies):  # the session is left out whole: one Skip
        yield Skip(source, parsed.loc(session[0].line), NO_REPLY if replies else OPENER)
        return
    if turns[0].mine:
        yield Skip(source, parsed.loc(turns[0].line), OPENER)
        turns = replies
    names = group and opts.groups == "names"
    messages = [{"role": "assistant" if t.mine else "user", "content": t.text(names and not t.mine)} for t in turns]
    yield Conversation(messages, source, parsed.loc(turns[0].line))
