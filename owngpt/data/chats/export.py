"""Which chat export a file is, and reading one into records: the formats, recognised from the file itself or
forced by a prefix (`wechat:FILE`, `qq:FILE`, `telegram:FILE`, `whatsapp:FILE`).

`detect_format(path)` looks at the first 8 KB only (a CSV header, the first message line, JSON keys), so a folder
walk can ask it of every file. `read_export` parses a file and decides whose messages are mine; `export_records`
turns it into the Conversation / Skip records every reader yields (owngpt/data/sources.py plugs it in).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Iterator

from owngpt.data.chats import qq, telegram, wechat, whatsapp
from owngpt.data.chats.model import ChatOptions, Parsed, resolve_owner, split_query
from owngpt.data.chats.sessions import session_records
from owngpt.data.encoding import head_text
from owngpt.data.records import Record
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


def export_files(specs: list[str], opts: ChatOptions) -> list[tuple[Path, str, ChatOptions]]:
    """Every chat export the specs name (files, folders, globs, prefixed or not) as (path, format, options);
    OwnGPTError for a spec that names none, saying which formats are known and how to force one."""
    found: list[tuple[Path, str, ChatOptions]] = []
    for spec in specs:
        forced, target, spec_opts = chat_spec(str(spec), opts)
        entries, _ = expand(target)
        files = [e.path for e in entries if e.reason is None]
        chats = [(f, forced or detect_format(f), spec_opts) for f in files]
        chats = [c for c in chats if c[1] is not None]
        if not chats:
            what = f"{target} holds no chat export" if len(files) != 1 else f"{target} is not a chat export"
            raise OwnGPTError(f"{what} owngpt recognises (known: {KNOWN}); {FORCE_HINT}")
        found += chats
    return found

