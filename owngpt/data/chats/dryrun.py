"""`--dry-run`: what a run would read and train on, without writing or training anything.

The same reading as `owngpt prepare` (owngpt/data/sources.py: chat exports, documents, builtin corpora, folders,
with the same decisions about exports in which no message is mine) and the same sessioning and message cleaning
(every message scrubbed of personal data exactly as prepare scrubs it), summed up: per chat export its format,
what becomes of it (read as a chat, left out, read as a document) and why, chats, text messages (those the block
list drops are counted with what was left out) and speakers; how many messages are mine (the share the model learns
from); what was left out and why (media, system lines, revoked, blocked, files); sessions kept and left out;
documents and other conversations; what scrubbing replaced; and a few example conversations, scrubbed. Nothing in
the report holds a value the scrubber replaces: examples are cleaned text, speaker lists and file names are
scrubbed (a WhatsApp contact without a name is its phone number, and so is the name of its export).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from owngpt.data.chats.export import CHAT, ChatExports
from owngpt.data.chats.model import ChatOptions
from owngpt.data.chats.sessions import GROUP_SKIPPED, NO_REPLY, OPENER
from owngpt.data.chats.style import text_style
from owngpt.data.clean import CleanConfig, Cleaner
from owngpt.data.pii import scrubbed
from owngpt.data.raw import cleaning_summary
from owngpt.data.records import Conversation, Document, Skip, reason_kind
from owngpt.data.sources import ReadOptions, read_sources
from owngpt.lang import language

SESSION_REASONS = (OPENER, NO_REPLY, GROUP_SKIPPED)


def dry_run(specs: Sequence[str], reading: ReadOptions | None = None, clean: CleanConfig | None = None, *,
            examples: int = 3, example_chars: int = 160, exports: ChatExports | None = None,
            exclude: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The report of the module docstring for what `owngpt prepare SPECS` would read with these reading options
    (PrepareConfig.reading: --text-field, --text-column, --split-blocks, the chat options, None among them when none
    was given, as prepare without --me); OwnGPTError for what prepare would refuse. `exports` keeps the chat exports
    parsed, for a run that goes on to prepare them (owngpt/clone.py)."""
    reading = reading or ReadOptions()
    exports = exports if exports is not None else ChatExports()
    cleaner = Cleaner(clean or CleanConfig())
    records = read_sources(list(specs), reading, exclude=exclude, exports=exports)  # checks every spec now
    # "FILE:", how every location in an export read as a chat starts
    chat_locs = tuple(f"{scrubbed(str(r.path))}:" for r in exports.reads.values() if r.status == CHAT)
    skipped, left_out, totals = Counter(), Counter(), Counter()
    shown: list[list[dict[str, str]]] = []
    for rec in records:
        if isinstance(rec, Skip):
            (left_out if rec.reason in SESSION_REASONS else skipped)[reason_kind(cleaner.shown(rec.reason))] += 1
        elif isinstance(rec, Document):
            totals.update(documents=1, document_chars=len(rec.text))
        elif isinstance(rec, Conversation):
            totals.update(conversations=1)
            if not rec.loc.startswith(chat_locs):
                continue  # a dialogue of another source: counted, not described
            cleaned = [{"role": m["role"], "content": cleaner.message(m["content"], rec.loc)[0]}
                       for m in rec.messages]
            totals.update(chat_conversations=1, **Counter(m["role"] for m in cleaned))
            totals.update(my_chars=sum(len(m["content"]) for m in cleaned if m["role"] == "assistant"),
                          chars=sum(len(m["content"]) for m in cleaned))
            if len(shown) < examples:
                shown.append([{"role": m["role"], "content": cleaner.shown(m["content"])[:example_chars]}
                              for m in cleaned[:6]])
    files = exports.summaries()
    read = [f for f in files if f["status"] == CHAT]
    messages, mine = sum(f["messages"] for f in read), sum(f["mine"] for f in read)
    my_texts = exports.my_messages()
    langs = Counter(language(t) or "other" for t in my_texts)
    opts = reading.chats or ChatOptions()
    return {
        "files": files,
        "messages": messages, "mine": mine, "share_mine": mine / max(1, messages),
        "dropped": dict(skipped.most_common()), "dropped_total": sum(skipped.values()),
        "conversations": totals["conversations"], "chat_conversations": totals["chat_conversations"],
        "sessions_left_out": dict(left_out.most_common()),
        "turns": {"user": totals["user"], "assistant": totals["assistant"]},
        "trained_chars": totals["my_chars"], "context_chars": totals["chars"] - totals["my_chars"],
        "documents": totals["documents"], "document_chars": totals["document_chars"],
        "languages": dict(langs.most_common()),
        "my_style": {k: v for k, v in text_style(my_texts).items() if k != "length_hist"},
        "scrubbed": {k: v["changed"] for k, v in cleaning_summary(cleaner).items() if k.startswith("pii_")},
        "block_list": opts.block_source or None,
        "settings": {"session_gap_s": opts.session_gap, "groups": opts.groups},
        "examples": shown,
    }


def language_of(report: dict[str, Any]) -> str:
    """'zh' when most of my messages are Chinese, else 'en' (the built-in corpora to pretrain on follow it)."""
    langs = report["languages"]
    return "zh" if langs.get("zh", 0) > langs.get("en", 0) else "en"
