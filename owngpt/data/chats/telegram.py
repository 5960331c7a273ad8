"""Telegram Desktop's JSON export (`result.json`): one chat (`{"name", "type", "id", "messages": [...]}`) or the
full export (`{"personal_information": {...}, "chats": {"list": [...]}, "left_chats": {"list": [...]}}`).

A message is `{"id", "type": "message", "date", "date_unixtime", "from", "from_id": "user123", "text"}`, where
`text` is a string or a list of strings and entities (`{"type": "bold", "text": "..."}`), joined. In a full export
the account's own `user_id` marks my messages (`from_id` "user<id>"); a single chat needs --me (a name or the id).
Chats of type personal_chat, bot_chat and saved_messages are private; the others are groups or channels.

Left out and counted: service messages (calls, pins, joins), forwarded messages (someone else wrote them), media
without a caption (photos, stickers, voice and video messages, files, locations, polls, contacts). A photo's caption
is kept as text. Locations are `file:line` of the message's `"type"` line, as Telegram writes one key per line.

A file that is not valid JSON (a copy cut short) is an error with the line, column and character where reading
stopped.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from owngpt.data.chats.model import ChatOptions, Dropped, Message, Parsed, epoch
from owngpt.data.encoding import read_whole
from owngpt.data.records import Skip
from owngpt.data.pii import scrubbed
from owngpt.errors import OwnGPTError

SUFFIXES = (".json",)
PRIVATE = ("personal_chat", "bot_chat", "saved_messages")
_MEDIA_KEYS = ("photo", "file", "media_type", "sticker_emoji", "location_information", "poll", "contact_information",
               "live_location_period_seconds", "game_title", "invoice_information")
_TYPE_LINE = re.compile(r'^\s*"type": "(?:message|service)",?\s*$', re.M)


def sniff(head: str, suffix: str) -> bool:
    """A .json file with Telegram's keys near its start."""
    if suffix not in SUFFIXES:
        return False
    return '"personal_information"' in head or (
        '"messages"' in head and ('"date_unixtime"' in head or '"from_id"' in head))


def parse(path: Path, opts: ChatOptions) -> Parsed:
    """The messages of a Telegram export, one chat or all (see the module docstring)."""
    got = read_whole(path, str(path))
    where = scrubbed(str(path))
    if isinstance(got, Skip):
        raise OwnGPTError(f"{where}: {got.reason}, not a Telegram export")
    text, mark = got
    parsed = Parsed("telegram", path, mark)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        # A copy cut short fails at its very end, or in a string that never closes.
        short = e.pos >= len(text.rstrip()) - 1 or e.msg.startswith("Unterminated string")
        cut = "; the file looks cut short: export it again" if short else ""
        raise OwnGPTError(f"{where}:{e.lineno}:{e.colno}{mark}: not valid JSON ({e.msg}, character {e.pos} "
                          f"of {len(text)}){cut}") from None
    chats, owner = _chats(data, path)
    if owner is not None:
        parsed.owner_flag = "the export's own account as sender (personal_information.user_id)"
    lines = _type_lines(text)
    total = sum(len(c.get("messages") or []) for c in chats)
    k = 0
    for ci, chat in enumerate(chats):
        name = str(chat.get("name") or chat.get("id") or f"chat {ci}")
        group = chat.get("type") not in PRIVATE
        for mi, msg in enumerate(chat.get("messages") or []):
            line = lines[k] if len(lines) == total else 0  # 0: the locations could not be matched to lines
            k += 1
            parsed.items.append(_item(msg, line, f"{ci}:{name}", group, owner))
    return parsed


def _type_lines(text: str) -> list[int]:
    """The line number of every message's `"type"` line, in file order (counted as we go: one pass)."""
    lines, line, pos = [], 1, 0
    for m in _TYPE_LINE.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        lines.append(line)
    return lines


def _chats(data: Any, path: Path) -> tuple[list[dict], str | None]:
    """The chats of a single-chat or full export, in file order, and the owner's from_id (full export)."""
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return [data], None
    if isinstance(data, dict) and isinstance(data.get("chats"), dict):
        chats = [c for key, value in data.items() if key in ("chats", "left_chats") and isinstance(value, dict)
                 for c in value.get("list") or [] if isinstance(c, dict)]
        user = (data.get("personal_information") or {}).get("user_id")
        return chats, (f"user{user}" if user is not None else None)
    raise OwnGPTError(f"{scrubbed(str(path))}: not a Telegram export: expected 'messages' (one chat) or 'chats' "
                      "with a 'list' (the full export) at the top level")


def flatten(value: Any) -> str:
    """Telegram's `text`: a string, or a list of strings and {"type", "text"} entities, joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) if isinstance(p, dict) else ""
                       for p in value)
    return ""


def _item(msg: Any, line: int, chat: str, group: bool, owner: str | None) -> Message | Dropped:
    if not isinstance(msg, dict):
        return Dropped(line, "not a message object")
    if msg.get("type") == "service":
        return Dropped(line, f"system notice (Telegram service message: {str(msg.get('action', 'other'))[:40]})")
    if msg.get("forwarded_from") is not None:
        return Dropped(line, "forwarded message (someone else wrote it)")
    text = flatten(msg.get("text")).strip()
    if not text:
        media = next((k for k in _MEDIA_KEYS if k in msg), None)
        kind = msg.get("media_type") or media
        return Dropped(line, f"media ({kind})" if kind else "empty message")
    when = _when(msg)
    if when is None:
        return Dropped(line, "no readable 'date'")
    sender = str(msg.get("from_id") or msg.get("actor_id") or "")
    return Message(chat, str(msg.get("from") or "Deleted Account"), sender, when, text, line,
                   mine=(sender == owner) if owner is not None else None, group=group)


def _when(msg: dict) -> float | None:
    unix = msg.get("date_unixtime")
    if isinstance(unix, (str, int)) and str(unix).isdigit():
        return float(unix)
    try:
        return epoch(datetime.fromisoformat(str(msg.get("date"))))
    except ValueError:
        return None
