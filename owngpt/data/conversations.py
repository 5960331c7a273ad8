"""Conversations for chat fine-tuning: load and check them, reverse them (MMI), pack rendered ids into rows.

A conversation is a list of {"role", "content"} messages: an optional system message first, then user and
assistant turns alternating, starting with the user and containing at least one assistant turn. Anything
else is counted and reported with where it came from; nothing is silently used or dropped.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from owngpt.data.chats.model import ChatOptions
from owngpt.data.clean import CleanConfig, Cleaner, quoted
from owngpt.data.corpus import is_prepared, read_split, refuse_unfinished
from owngpt.data.pii import scrubbed
from owngpt.data.raw import cleaned, cleaning_summary
from owngpt.data.records import Conversation, Skip, reason_kind
from owngpt.data.sources import ReadOptions, read_sources
from owngpt.tokenizer import (
    Message,
    Tokenizer,
    check_messages,
    conversation_start,
    messages_problem,
    render_message,
)


def check_conversation(messages: object) -> tuple[list[Message] | None, str | None]:
    """Return (usable messages, None) or (None, reason). A trailing user turn is trimmed, not an error."""
    if not isinstance(messages, list) or not messages:
        return None, "'messages' must be a non-empty list"
    problem = messages_problem(messages)
    if problem is not None:
        return None, problem
    out = [{"role": m["role"], "content": m["content"]} for m in messages]
    for i, m in enumerate(out):
        if not m["content"].strip():
            return None, f"messages[{i}] ({m['role']}): empty content"
        if m["role"] == "system" and i != 0:
            return None, f"messages[{i}]: a system message may only come first"
    turns = out[1:] if out[0]["role"] == "system" else out
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            return None, f"broken alternation: turn {i} is {m['role']!r}, expected {expected!r}"
    if turns and turns[-1]["role"] == "user":
        out = out[:-1]
        turns = turns[:-1]
    if not turns:
        return None, "no assistant turn"
    return out, None


@dataclass
class ConversationSet:
    """Valid conversations plus an account of every one that was not usable."""

    conversations: list[list[dict[str, str]]] = field(default_factory=list)
    locs: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (loc, reason)
    documents_ignored: int = 0  # plain documents met among the sources (not conversations)
    cleaning: dict[str, dict[str, int]] | None = None  # raw sources: what cleaning changed, per filter

    def add(self, messages: object, loc: str) -> None:
        ok, reason = check_conversation(messages)
        if ok is None:
            self.problems.append((loc, reason or "invalid"))
        else:
            self.conversations.append(ok)
            self.locs.append(loc)

    def summary(self) -> dict:
        # a reason may quote a value, and a file name may hold a phone number
        problems = [(scrubbed(loc), quoted(r, CleanConfig())) for loc, r in self.problems]
        reasons = Counter(reason_kind(r) for _, r in problems)
        return {
            "conversations": len(self.conversations),
            "rejected": len(self.problems),
            "rejected_by_reason": dict(reasons),
            "rejected_examples": [f"{loc}: {r}" for loc, r in problems[:10]],
            "documents_ignored": self.documents_ignored,
            **({"cleaning": self.cleaning} if self.cleaning is not None else {}),
        }


def load_conversations(specs: Iterable[str], split: str = "train") -> ConversationSet:
    """Conversations from prepared folders (their `conversations/SPLIT.jsonl`) or any dialogue source spec.
    Raw sources have no splits: they are returned whole whatever `split` says, with every message cleaned and
    scrubbed as `prepare` does (owngpt/data/raw.py; counted in the summary's "cleaning"). A chat export is read as
    a chat, never as a document: one that does not say which speaker I am (no `FILE?me=NAME`) raises OwnGPTError
    naming the speakers found, as does an unfinished prepare folder (owngpt/data/corpus.py)."""
    out = ConversationSet()
    raw_specs = []
    for spec in specs:
        if is_prepared(spec):
            for line in read_split(spec, "conversations", split):
                if line.record is None:
                    out.problems.append((line.loc, line.problem))
                else:
                    out.add(line.record["messages"], str(line.record.get("source") or line.loc))
        else:
            refuse_unfinished(spec)
            raw_specs.append(spec)
    if raw_specs:
        cleaner = Cleaner(CleanConfig())
        # chat options given (the defaults): only `prepare`, which reads documents, reads an unowned export as one
        for rec in cleaned(read_sources(raw_specs, ReadOptions(chats=ChatOptions())), cleaner):
            if isinstance(rec, Conversation):
                out.add(rec.messages, rec.loc)
            elif isinstance(rec, Skip):
                out.problems.append((rec.loc, rec.reason))
            else:
                out.documents_ignored += 1
        out.cleaning = cleaning_summary(cleaner)
    return out


_SWAP = {"user": "assistant", "assistant": "user"}


def reverse_conversation(messages: list[Message]) -> list[Message] | None:
    """The training conversation of the backward (MMI) model: the dialogue played backwards, roles swapped.

    For [system?, u1, a1, u2, a2] it returns
        [user: a2, assistant: u2, user: a1, assistant: u1]
    i.e. the last assistant reply becomes the first "user" message and every earlier message follows in
    reverse order, with user and assistant swapped. The loss mask of `render_conversation` then covers
    exactly the original user turns, so the model learns log p(u2 | a2) + log p(u1 | a2, u2, a1): the
    context predicted from the reply. System messages are dropped (they do not depend on the reply),
    messages after the last assistant reply are ignored, consecutive messages of one role are joined with
    a newline, and a trailing (swapped) user message, which has nothing after it to predict, is dropped.
    Returns None when no assistant reply has a user message before it."""
    turns = [m for m in messages if m.get("role") in _SWAP]
    last = next((i for i in range(len(turns) - 1, -1, -1)
                 if turns[i]["role"] == "assistant" and any(t["role"] == "user" for t in turns[:i])), None)
    if last is None:
        return None
    out: list[Message] = []
    for m in reversed(turns[: last + 1]):
        role = _SWAP[m["role"]]
        if out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n" + m["content"]}
        else:
            out.append({"role": role, "content": m["content"]})
    while out and out[-1]["role"] == "user":
        out.pop()
    return out


def render_windows(tok: Tokenizer, messages: list[Message], limit: int) -> list[tuple[list[int], list[int]]]:
    """A conversation rendered as (ids, mask) windows of at most `limit` tokens, cut at message boundaries.

    A conversation that fits is one window. A longer one (chit-chat dialogues often run to hundreds of tokens)
    becomes consecutive windows, each opening with the system message (if any, and if it leaves room) and, where
    the pair fits, the user turn that the window's first reply answers, instead of all but the first context's
    worth being cut away. A single message longer than `limit` stays one (later truncated) window.
    """
    start = conversation_start(tok)  # every window opens with it ([CLS] in the chitchat format, nothing in ChatML)
    limit -= len(start)
    pieces = [render_message(tok, m) for m in check_messages(messages)]
    head = 1 if messages and messages[0]["role"] == "system" else 0
    whole = sum(len(ids) for ids, _ in pieces)
    if whole <= limit:
        return [(start + sum((p[0] for p in pieces), []), [0] * len(start) + sum((p[1] for p in pieces), []))]
    windows: list[tuple[list[int], list[int]]] = []
    i, n = head, len(pieces)
    while i < n:
        # The system message opens the window unless it would push the window's first message — a user turn
        # together with the reply it gets — past the limit: a reply keeps its question before the system prompt.
        first = len(pieces[i][0])
        if i + 1 < n and messages[i]["role"] == "user" and messages[i + 1]["role"] == "assistant":
            first += len(pieces[i + 1][0])
        system = head and len(pieces[0][0]) + first <= limit
        ids, mask = (list(pieces[0][0]), list(pieces[0][1])) if system else ([], [])
        ids, mask = start + ids, [0] * len(start) + mask
        j = i
        while j < n and (j == i or len(ids) - len(start) + len(pieces[j][0]) <= limit):
            ids += pieces[j][0]
            mask += pieces[j][1]
            j += 1
        if any(mask):
            windows.append((ids, mask))
        # The next window starts with the user turn before the first reply that did not fit.
        i = j - 1 if j < n and messages[j]["role"] == "assistant" and j - 1 > i else j
    return windows


def pack_examples(
    examples: list[tuple[list[int], list[int]]], row_len: int
) -> tuple[list[list[tuple[list[int], list[int]]]], int]:
    """Best-fit-decreasing packing of whole examples into rows of at most `row_len` tokens.

    An example longer than a row is cut to its first `row_len` tokens (counted in the second return value),
    so padding is only the leftover space of each row instead of one pad run per short example. Rows are kept
    sorted by free space, so each example finds its best row by bisection (tens of thousands of examples pack
    in well under a second).
    """
    truncated = 0
    items = []
    for ids, mask in examples:
        if len(ids) > row_len:
            ids, mask = ids[:row_len], mask[:row_len]
            truncated += 1
        if sum(mask[1:]) > 0:  # something left to learn from
            items.append((ids, mask))
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    rows: list[list[tuple[list[int], list[int]]]] = []
    free: list[tuple[int, int]] = []  # (free space, row index), ascending
    for i in order:
        n = len(items[i][0])
        k = bisect.bisect_left(free, (n, -1))  # the row with the least free space that still fits
        if k == len(free):
            rows.append([items[i]])
            bisect.insort(free, (row_len - n, len(rows) - 1))
        else:
            space, r = free.pop(k)
            rows[r].append(items[i])
            bisect.insort(free, (space - n, r))
    return rows, truncated
