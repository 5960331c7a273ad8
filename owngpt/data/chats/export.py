"""Which chat export a file is, and reading one into records: the formats, recognised from the file itself or
forced by a prefix (`wechat:FILE`, `qq:FILE`, `telegram:FILE`, `whatsapp:FILE`).

`detect_format(path)` looks at the first 8 KB only (a CSV header, the first message lines, JSON keys), so a folder
walk can ask it of every file. `read_export` parses a file and decides whose messages are mine; `export_records`
turns it into the Conversation / Skip records every reader yields.

`ChatExports` holds the exports of one run (a `prepare`, a dry run, a `clone`), each parsed once: planning the
reading (whose messages are mine, checked before any work), the records, and the counts a report shows all use
that one parse. It also decides what happens to an export in which no message is mine (owngpt/data/sources.py asks
it for every export a spec names):
  - nothing says which speaker I am (no --me, and the export has no owner flag): an error; but a file the format
    was only recognised in (not forced by a prefix), read by a verb given no chat options (`owngpt prepare docs/`),
    is read as a document instead, and the report says so: plain text is what such a run reads. Only prepare
    reads so leniently: verbs that load conversations always give chat options (owngpt/data/sources.ReadOptions);
  - --me names nobody there, or I wrote nothing there: the file is left out (a Skip, counted) — unless no export of
    the run has a message of mine, which is an error (`check`). A run given no chat options is not about chats:
    there an export I wrote nothing in (WeChat's own flag says so) is left out and counted, never an error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from owngpt.data.chats import qq, telegram, wechat, whatsapp
from owngpt.data.chats.model import NAMES, NO_OWNER, NO_TEXT, ChatOptions, Dropped, Message, OwnerProblem, Parsed
from owngpt.data.chats.model import owner_problem, resolve_owner, speakers_line, split_query
from owngpt.data.chats.sessions import BLOCKED, blocked, session_records
from owngpt.data.encoding import head_text
from owngpt.data.pii import scrubbed
from owngpt.data.records import Record, Skip
from owngpt.data.walk import expand
from owngpt.errors import OwnGPTError

FORMATS: dict[str, ModuleType] = {"wechat": wechat, "qq": qq, "telegram": telegram, "whatsapp": whatsapp}
PREFIXES = tuple(f"{name}:" for name in FORMATS)
KNOWN = ("WeChat CSV exported by PyWxDump, QQ's .txt export, Telegram Desktop's result.json, "
         "WhatsApp's .txt export (Android or iOS)")
FORCE_HINT = "force a format with a prefix: wechat:FILE, qq:FILE, telegram:FILE or whatsapp:FILE"


def detect_format(path: str | Path) -> str | None:
    """'wechat' | 'qq' | 'telegram' | 'whatsapp' when the file's start looks like that export, else None."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not any(suffix in m.SUFFIXES for m in FORMATS.values()):
        return None
    try:
        head = head_text(path)
    except OSError:
        return None
    return next((name for name, m in FORMATS.items() if m.sniff(head, suffix)), None)


def chat_spec(spec: str, opts: ChatOptions) -> tuple[str | None, str, ChatOptions]:
    """(the format a prefix forces or None, the path part, the options with the spec's own `?me=...` applied)."""
    spec, opts = split_query(spec, opts)
    for name in FORMATS:
        if spec.startswith(f"{name}:"):
            return name, spec[len(name) + 1:], opts
    return None, spec, opts


def read_export(path: str | Path, fmt: str, opts: ChatOptions) -> Parsed:
    """One export parsed as `fmt`, with my messages marked (see model.resolve_owner for the errors)."""
    parsed = FORMATS[fmt].parse(Path(path), opts)
    resolve_owner(parsed, opts.me)
    return parsed


def export_records(path: str | Path, source: str | None = None, *, fmt: str,
                   opts: ChatOptions | None = None) -> Iterator[Record]:
    """The Conversation and Skip records of one export (owngpt/data/chats/sessions.py)."""
    opts = opts or ChatOptions()
    return session_records(read_export(path, fmt, opts), source or str(path), opts)


def file_format(path: Path, forced: str | None, named: bool) -> tuple[str | None, bool]:
    """(the chat export a file is, whether a prefix decided it): the forced format for a file named directly; in a
    folder, the format its content shows, else the forced one (so `whatsapp:exports/` still reads the QQ export
    beside the WhatsApp ones)."""
    if forced and named:
        return forced, True
    shown = detect_format(path)
    return (shown, False) if shown else (forced, forced is not None)


def export_files(specs: list[str], opts: ChatOptions) -> list[tuple[Path, str, ChatOptions, bool]]:
    """Every chat export the specs name (files, folders, globs, prefixed or not) as (path, format, options, whether
    a prefix decided the format); OwnGPTError for a spec that names none, saying which formats are known and how to
    force one."""
    found: list[tuple[Path, str, ChatOptions, bool]] = []
    for spec in specs:
        forced, target, spec_opts = chat_spec(str(spec), opts)
        entries, _ = expand(target)
        files = [e for e in entries if e.reason is None]
        chats = [(e.path, *file_format(e.path, forced, e.folder is None)) for e in files]
        if not any(fmt for _, fmt, _ in chats):
            what = f"{target} holds no chat export" if len(files) != 1 else f"{target} is not a chat export"
            raise OwnGPTError(f"{scrubbed(what)} owngpt recognises (known: {KNOWN}); {FORCE_HINT}")
        found += [(path, fmt, spec_opts, by_prefix) for path, fmt, by_prefix in chats if fmt]
    return found


CHAT, LEFT_OUT, DOCUMENT = "chat", "left out", "document"  # what a run does with an export


@dataclass
class ExportRead:
    """One export as a run reads it: parsed once, with what the run does with it and why."""

    path: Path
    fmt: str
    opts: ChatOptions
    parsed: Parsed
    problem: OwnerProblem | None  # why no message is mine (None: some are)
    status: str = CHAT
    note: str = ""  # for LEFT_OUT and DOCUMENT: why, for the report
    lenient: bool = False  # read by a run given no chat options: leaving it out is never an error (`check`)

    def records(self, source: str) -> Iterator[Record]:
        """Its Conversation / Skip records (CHAT), or one Skip saying why it was left out (LEFT_OUT)."""
        if self.status == CHAT:
            return session_records(self.parsed, source, self.opts)
        return iter([Skip(source, self.parsed.where, self.note)])

    def mine(self) -> list[str]:
        """My messages, those the block list drops left out (none unless the export is read as a chat)."""
        if self.status != CHAT:
            return []
        hidden = blocked(self.parsed, self.opts)
        return [m.text for i, m in enumerate(self.parsed.items) if isinstance(m, Message) and m.mine
                and i not in hidden]

    def summary(self) -> dict[str, Any]:
        """Its counts for a report: chats, text messages (those the block list drops counted with what was left
        out), mine, speakers (scrubbed), what was left out by reason."""
        hidden = blocked(self.parsed, self.opts)
        messages = [m for i, m in enumerate(self.parsed.items) if isinstance(m, Message) and i not in hidden]
        dropped = Counter(m.reason for m in self.parsed.items if isinstance(m, Dropped))
        if hidden:
            dropped[BLOCKED] += len(hidden)
        return {"path": self.parsed.where, "format": NAMES[self.fmt], "status": self.status, "note": self.note,
                "chats": len({m.chat for m in messages}), "group_chats": len({m.chat for m in messages if m.group}),
                "messages": len(messages), "mine": sum(1 for m in messages if m.mine),
                "speakers": speakers_line(messages), "dropped": dict(dropped.most_common())}


class ChatExports:
    """The chat exports of one run, each parsed once (see the module docstring)."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[Path, str, ChatOptions], tuple[Parsed, OwnerProblem | None]] = {}
        self.reads: dict[tuple[Path, str, ChatOptions], ExportRead] = {}  # the latest decision for each

    def read(self, path: str | Path, fmt: str, opts: ChatOptions, *, forced: bool = False,
             lenient: bool = False) -> ExportRead:
        """The export parsed as `fmt` (once per run), with what to do with it: `forced` when a prefix named its
        format; `lenient` when the run was given no chat options (a file no one called a chat may be a document).
        OwnGPTError for a problem the user must fix (see the module docstring)."""
        key = (Path(path), fmt, opts)
        if key not in self._parsed:
            parsed = FORMATS[fmt].parse(Path(path), opts)
            self._parsed[key] = parsed, owner_problem(parsed, opts.me)
        parsed, problem = self._parsed[key]
        status, note = CHAT, ""
        if problem is None:
            pass
        elif lenient and not forced and problem.kind in (NO_OWNER, NO_TEXT):
            status = DOCUMENT
            note = f"read as a document: it looks like a {NAMES[fmt]} export, but " + (
                "nothing says which speaker you are (give --me NAME to read it as a chat)" if problem.kind == NO_OWNER
                else "it holds no text message")
        elif problem.kind == NO_OWNER or (forced and problem.kind == NO_TEXT):
            raise OwnGPTError(problem.message)
        else:
            status, note = LEFT_OUT, f"left out: {problem.detail}"
        got = self.reads[key] = ExportRead(Path(path), fmt, opts, parsed, problem, status, note, lenient)
        return got

    def check(self) -> None:
        """OwnGPTError when exports were read as chats but none has a message of mine (the first one's problem);
        exports read by a run given no chat options do not count (see the module docstring)."""
        reads = [r for r in self.reads.values() if r.status != DOCUMENT and not r.lenient]
        if reads and not any(r.status == CHAT for r in self.reads.values()):
            others = len(reads) - 1
            more = f"; and no message is yours in the {others} other export{'s' if others > 1 else ''} either"
            raise OwnGPTError(reads[0].problem.message + (more if others else ""))

    def summaries(self) -> list[dict[str, Any]]:
        return [r.summary() for r in self.reads.values()]

    def my_messages(self) -> list[str]:
        return [t for r in self.reads.values() for t in r.mine()]
