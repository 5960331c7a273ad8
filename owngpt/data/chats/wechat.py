"""WeChat chat history as PyWxDump exports it to CSV (the export WeClone reads):

    id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime
    1,8812...,文本,0,wxid_abc123,wxid_abc123,在吗,,2023-05-01 20:15:02
    2,8813...,文本,1,我,wxid_abc123,在的,,2023-05-01 20:15:40

`is_sender=1` marks my messages (so --me is not needed); `room_name` is the chat (a contact's wxid, or
`...@chatroom` for a group, where `talker` is who wrote); `CreateTime` is `YYYY-MM-DD HH:MM:SS` (or Unix seconds).
Older PyWxDump versions write a `content` column (JSON holding `msg`) instead of `msg` and `src`; both are read.

Kept: text (`文本`), and quote replies (`引用回复`; older versions: `带有引用的文本消息`, `类似文字消息而不一样的消息`) as
the reply's own text (the quoted message after it is cut; a row whose text is only its type name is left out).
Left out and counted by type: images, stickers (`动画表情`), voice, video, files, links and other shares, system
notices (`系统通知`, `拍一拍`, `邀请加群`), revoked messages (`消息撤回…`, or a notice that says `撤回了一条消息`).

Names: the CSV knows people only by their account ids (wxid_...), which must not become training text. In a group
chat the other speakers are named from the `users.json` PyWxDump writes beside the CSV files (the remark you gave
a contact, else their nickname); anyone it does not name gets a pseudonym, stable within the chat, in order of
appearance: "A", "B", ... So a user turn reads "韩梅梅: 周末有空吗\nB: 我有", never "wxid_hmm: ...". (A private chat
has no names in its turns; reports show the wxid beside the name, for you to recognise.) `users.json` itself is no
source of text: wherever files are read it is left out with CONTACTS_NOTE, which names no one (`is_contact_list`),
and a prepare of a CSV named directly follows it (`contacts_path`, owngpt/data/fingerprint.py).
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

from owngpt.data.chats.model import ChatOptions, Dropped, Message, Parsed, epoch, text_lines
from owngpt.data.encoding import head_text
from owngpt.data.pii import scrubbed
from owngpt.errors import OwnGPTError

SUFFIXES = (".csv",)
REQUIRED = ("type_name", "is_sender", "talker", "room_name", "CreateTime")
TEXT = "文本"
QUOTES = ("引用回复", "带有引用的文本消息", "类似文字消息而不一样的消息")  # kept as the reply's own text
SYSTEM = ("系统通知", "拍一拍", "邀请加群", "添加好友", "群公告")
CONTACTS = "users.json"  # PyWxDump's contact list, beside the CSV files
CONTACTS_NOTE = "WeChat contact list (users.json), used for speaker names"


def sniff(head: str, suffix: str) -> bool:
    """A .csv file whose header has PyWxDump's columns."""
    first = head.lstrip("\ufeff").split("\n", 1)[0]
    names = {c.strip() for c in first.split(",")}
    return suffix in SUFFIXES and set(REQUIRED) <= names and bool({"msg", "content"} & names)


def parse(path: Path, opts: ChatOptions) -> Parsed:
    """The messages of one PyWxDump CSV (see the module docstring)."""
    mark, lines = text_lines(path, "wechat")
    parsed = Parsed("wechat", path, mark, owner_flag="is_sender=1")
    where = [0]  # the physical line the csv module read last

    def decoded():
        for lineno, text, reason in lines:
            where[0] = lineno
            if text is None:
                parsed.items.append(Dropped(lineno, reason))
            else:
                yield text

    csv.field_size_limit(2**31 - 1)
    rows = csv.reader(decoded())
    header = [h.strip() for h in next(rows, [])]
    missing = [c for c in REQUIRED if c not in header] + ([] if {"msg", "content"} & set(header) else ["msg"])
    if missing:
        raise OwnGPTError(f"{scrubbed(str(path))}:1{mark}: not a PyWxDump WeChat CSV: no column "
                          f"{', '.join(map(repr, missing))} "  # a file without a header shows its first row:
                          f"(its columns: {scrubbed(', '.join(header)) or 'none'})")  # scrubbed, as every value
    col = {name: i for i, name in enumerate(header)}
    start = 2
    for row in rows:
        line, start = start, where[0] + 1
        if not row:
            continue
        get = lambda name: row[col[name]].strip() if col.get(name, len(row)) < len(row) else ""  # noqa: E731
        parsed.items.append(_item(get, line, "msg" in col))
    _name_speakers(parsed.messages, _contacts(contacts_path(path)))
    return parsed


def contacts_path(csv_path: Path) -> Path:
    """Where PyWxDump writes the contact list of the chats of a CSV: beside it."""
    return csv_path.parent / CONTACTS


def _users(path: Path) -> dict[str, dict]:
    """PyWxDump's users.json as {wxid: that user's object}; {} without a readable one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(wxid): user for wxid, user in data.items() if isinstance(user, dict)}


def is_contact_list(path: Path) -> bool:
    """Whether a .json file is PyWxDump's contact list: an object mapping wxid_... to objects with a nickname or
    remark (only a file that starts like one is parsed whole)."""
    if path.suffix.lower() != ".json":
        return False
    try:
        head = head_text(path).lstrip("\ufeff \t\r\n")
    except OSError:
        return False
    if not head.startswith("{") or not ("nickname" in head or "remark" in head):
        return False
    users = _users(path)
    return any(wxid.startswith("wxid_") for wxid in users) and any(
        "nickname" in user or "remark" in user for user in users.values())


def _contacts(path: Path) -> dict[str, str]:
    """wxid -> the name to show (remark, else nickname) from PyWxDump's users.json; {} without a readable one."""
    names = {}
    for wxid, user in _users(path).items():
        name = str(user.get("remark") or user.get("nickname") or "").strip()
        if name:
            names[wxid] = name
    return names


def _pseudonym(i: int) -> str:
    """A, B, ..., Z, AA, AB, ...: the i-th unnamed speaker of a chat."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _name_speakers(messages: list[Message], contacts: dict[str, str]) -> None:
    """Speakers by contact name; in group chats the unnamed ones by a pseudonym of their chat (see the docstring)."""
    unnamed: dict[str, dict[str, str]] = {}
    for m in messages:
        if m.mine:
            continue
        if m.speaker_id in contacts:
            m.speaker = contacts[m.speaker_id]
        elif m.group:
            seen = unnamed.setdefault(m.chat, {})
            m.speaker = seen.setdefault(m.speaker_id, _pseudonym(len(seen)))


def _item(get, line: int, has_msg: bool) -> Message | Dropped:
    kind = get("type_name")
    text = get("msg") if has_msg else _content(get("content"))
    if kind.startswith("消息撤回") or ("撤回了一条消息" in text and kind in SYSTEM):
        return Dropped(line, "revoked message")
    if kind in SYSTEM:
        return Dropped(line, f"system notice (WeChat {kind})")
    if kind != TEXT and (kind not in QUOTES or text.strip() == kind):
        return Dropped(line, f"media or other non-text message (WeChat {kind or 'no type_name'})")
    if kind in QUOTES:
        text = text.split("\n\n[引用]", 1)[0]  # "reply\n\n[引用](time)name:quoted text": keep the reply
    if get("is_sender") not in ("0", "1"):
        return Dropped(line, "is_sender is neither 0 nor 1")
    when = _when(get("CreateTime"))
    if when is None:
        return Dropped(line, "unreadable CreateTime")
    if not text.strip():
        return Dropped(line, "empty message")
    room, talker = get("room_name"), get("talker")
    mine = get("is_sender") == "1"
    return Message(room, talker, talker, when, text.strip(), line, mine=mine,
                   group=room.endswith("@chatroom"))


def _content(value: str) -> str:
    """Older exports: `content` is JSON with the text under "msg" (or a JSON string)."""
    try:
        data = json.loads(value)
    except ValueError:
        return value
    if isinstance(data, dict):
        return str(data.get("msg") or "")
    return data if isinstance(data, str) else value


def _when(value: str) -> float | None:
    if value.isdigit():
        return float(value) / (1000 if len(value) == 13 else 1)
    try:
        return epoch(datetime.strptime(value, "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None
