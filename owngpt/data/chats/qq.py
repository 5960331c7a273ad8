"""QQ's text export (消息管理器 → 导出消息记录 → .txt), one chat or all of them:

    消息记录（此消息记录为文本格式，不支持重新导入）
    ================================================================
    消息分组:我的好友
    ================================================================
    消息对象:张三
    ================================================================

    2023-05-01 20:15:02 张三(123456789)
    在吗？

    2023-05-01 20:15:40 我的昵称(987654321)
    在的，刚下班
    今天好累

A message starts with a `YYYY-MM-DD HH:MM:SS nickname(QQ number)` line after a blank line (also `nickname<e-mail>`,
`【管理员】nickname(number)`, or a bare nickname in older friend exports); the lines after it, up to the blank
line before the next header, are its text. Each `消息对象:` section is one chat; a chat with more than two speakers is
a group. --me names your nickname or QQ number (numbers are steadier: a group nickname can change).

Left out and counted: messages that are only `[图片]` / `[表情]` / `[语音]` / `[视频]` / `[文件]` placeholders (the
placeholders are cut from messages that also have text), system notices (`系统消息(10000)`), revoked messages
(`撤回了一条消息`). GBK files (QQ on Windows) are converted (owngpt/data/encoding.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from owngpt.data.chats.model import ChatOptions, Dropped, Message, Parsed, epoch, mark_groups, text_lines

SUFFIXES = (".txt",)
BANNER = "消息记录（此消息记录为文本格式，不支持重新导入）"
HEADER = re.compile(r"(\d{4}-\d{1,2}-\d{1,2}) (\d{1,2}:\d{2}:\d{2}) (.*?)\s*")
_WHO = re.compile(r"(?:【[^】]*】)?(.*?)(?:\((\d{4,12})\)|<([^<>\s]+@[^<>\s]+)>)")
_PLACEHOLDER = re.compile(r"\[(图片|表情|语音|视频|文件)\]")
_SYSTEM_IDS = ("10000", "1000000")


def sniff(head: str, suffix: str) -> bool:
    """A .txt file that starts with QQ's banner, or whose first lines hold two or more QQ message headers with a
    number (one header-like line makes no export)."""
    if suffix not in SUFFIXES:
        return False
    lines = [line.strip() for line in head.splitlines()]
    first = next((line for line in lines if line), "")
    if first.startswith("消息记录（"):
        return True
    headers = [m for line in lines[:40] if (m := HEADER.fullmatch(line)) and _WHO.fullmatch(m.group(3))]
    return len(headers) >= 2


def parse(path: Path, opts: ChatOptions) -> Parsed:
    """The messages of one QQ text export (see the module docstring)."""
    mark, lines = text_lines(path, "qq")
    parsed = Parsed("qq", path, mark)
    chat = path.name
    current: list | None = None  # [line, when, name, number, text lines]
    blank_before = True
    for lineno, text, reason in lines:
        if text is None:
            parsed.items.append(Dropped(lineno, reason))
            continue
        line = text.rstrip("\r\n")
        stripped = line.strip()
        section = (len(stripped) >= 5 and set(stripped) == {"="}) or stripped.startswith(
            ("消息记录（", "消息分组:", "消息分组：", "消息对象:", "消息对象："))
        if section:  # the banner and section lines between chats end the message before them
            _flush(parsed, current, chat)
            current, blank_before = None, True
            if stripped.startswith("消息对象"):
                chat = stripped[5:].strip() or chat
            continue
        m = HEADER.fullmatch(stripped) if blank_before else None
        blank_before = not stripped
        if m is not None:
            _flush(parsed, current, chat)
            who = _WHO.fullmatch(m.group(3))
            name, number = (who.group(1), who.group(2) or who.group(3)) if who else (m.group(3), "")
            when = datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S")
            current = [lineno, epoch(when), name.strip(), number, []]
        elif current is not None:
            current[4].append(line)
        elif stripped:
            parsed.items.append(Dropped(lineno, "text before the first message header"))
    _flush(parsed, current, chat)
    mark_groups(parsed.messages)
    return parsed


def _flush(parsed: Parsed, current: list | None, chat: str) -> None:
    if current is None:
        return
    lineno, when, name, number, body = current
    text = "\n".join(body).strip()
    if number in _SYSTEM_IDS or name == "系统消息":
        parsed.items.append(Dropped(lineno, "revoked message" if "撤回了一条消息" in text else "system notice"))
        return
    if "撤回了一条消息" in text and len(text) < 40:
        parsed.items.append(Dropped(lineno, "revoked message"))
        return
    kinds = _PLACEHOLDER.findall(text)
    text = _PLACEHOLDER.sub("", text).strip()
    if not text:
        parsed.items.append(Dropped(lineno, f"media ({kinds[0]})" if kinds else "empty message"))
        return
    parsed.items.append(Message(chat, name, number, when, text, lineno))
