"""`--dry-run`: what chat exports would give to train on, without writing or training anything.

The same reading, sessioning and cleaning as `owngpt prepare` (every message scrubbed of personal data exactly as
prepare scrubs it), summed up: per file its format, chats, text messages (those the block list drops are counted
with what was left out) and speakers; how many messages are mine (the share the model learns from); what was left
out and why (media, system lines, revoked, blocked); sessions kept and
left out; what scrubbing replaced; and a few example conversations, scrubbed. Nothing in the report holds a value
the scrubber replaces: examples are cleaned text, speaker lists are scrubbed (a WhatsApp contact without a name is
its phone number).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from owngpt.data.chats.export import export_files, read_export
from owngpt.data.chats.model import NAMES, ChatOptions, Message, speakers_line
from owngpt.data.chats.sessions import GROUP_SKIPPED, NO_REPLY, OPENER, blocked, session_records
from owngpt.data.chats.style import text_style
from owngpt.data.clean import CleanConfig, Cleaner
from owngpt.data.raw import cleaning_summary
from owngpt.data.records import Conversation, Skip, reason_kind
from owngpt.lang import language

SESSION_REASONS = (OPENER, NO_REPLY, GROUP_SKIPPED)


def dry_run(specs: list[str], opts: ChatOptions, clean: CleanConfig | None = None, *,
            examples: int = 3, example_chars: int = 160) -> dict[str, Any]:
    """The report of the module docstring for these exports (OwnGPTError for a spec that names no export, or an
    export where --me names nobody)."""
    clean = clean or CleanConfig()
    cleaner = Cleaner(clean)
    files, dropped, left_out = [], Counter(), Counter()
    totals = Counter()
    my_texts: list[str] = []
    shown: list[list[dict[str, str]]] = []
    for path, fmt, file_opts in export_files(specs, opts):
        parsed = read_export(path, fmt, file_opts)
        hidden = blocked(parsed, file_opts)  # counted with what is left out, not as messages
        messages = [m for i, m in enumerate(parsed.items) if isinstance(m, Message) and i not in hidden]
        mine = [m.text for m in messages if m.mine]
        my_texts += mine
        files.append({"path": str(path), "format": NAMES[fmt], "chats": len({m.chat for m in messages}),
                      "group_chats": len({m.chat for m in messages if m.group}), "messages": len(messages),
                      "mine": len(mine), "speakers": speakers_line(messages)})
        totals.update(messages=len(messages), mine=len(mine))
        for rec in session_records(parsed, str(path), file_opts):
            if isinstance(rec, Skip):
                (left_out if rec.reason in SESSION_REASONS else dropped)[reason_kind(cleaner.shown(rec.reason))] += 1
            elif isinstance(rec, Conversation):
                cleaned = [{"role": m["role"], "content": cleaner.message(m["content"], rec.loc)[0]}
                           for m in rec.messages]
                totals.update(conversations=1, **Counter(m["role"] for m in cleaned))
                totals.update(my_chars=sum(len(m["content"]) for m in cleaned if m["role"] == "assistant"),
                              chars=sum(len(m["content"]) for m in cleaned))
                if len(shown) < examples:
                    shown.append([{"role": m["role"], "content": cleaner.shown(m["content"])[:example_chars]}
                                  for m in cleaned[:6]])
    langs = Counter(language(t) or "other" for t in my_texts)
    return {
        "files": files,
        "messages": totals["messages"], "mine": totals["mine"],
        "share_mine": totals["mine"] / max(1, totals["messages"]),
        "dropped": dict(dropped.most_common()), "dropped_total": sum(dropped.values()),
        "conversations": totals["conversations"], "sessions_left_out": dict(left_out.most_common()),
        "turns": {"user": totals["user"], "assistant": totals["assistant"]},
        "trained_chars": totals["my_chars"], "context_chars": totals["chars"] - totals["my_chars"],
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
