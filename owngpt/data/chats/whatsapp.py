"""WhatsApp's "Export chat" text file (without media), in its two forms:

    Android   12/31/23, 9:41 PM - Alice: see you at 8        (also 31/12/2023, 21:41 - ... and 31.12.23, 21:41 - ...)
    iOS       [31/12/2023, 21:41:05] Alice: see you at 8     (system and media lines start with U+200E)

A line that does not start with a date is the next line of the message before it (multi-line messages). The
date order follows the locale the phone used: day/month/year or month/day/year (or year first), decided from the
file's own dates (a first number above 12 means day first, a second above 12 month first; otherwise dots mean day
first and AM/PM month first), or forced with ChatOptions.date_order. Two-digit years are 20xx.

Left out and counted: media (`<Media omitted>`, `image omitted`, `<attached: ...>`, file names with
`(file attached)`, locations, polls), deleted messages ("This message was deleted"), system lines (encryption notice,
joins, subject changes, missed calls). `<This message was edited>` is cut from the end of a message. The export has
no ids and no owner flag: --me names your display name. A chat with more than two speakers is a group.

Not handled: exports in languages whose media and deletion notices are not listed below (they stay as text).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from owngpt.data.chats.model import ChatOptions, Dropped, Message, Parsed, epoch, mark_groups, text_lines
from owngpt.errors import OwnGPTError

SUFFIXES = (".txt",)
_DATE = r"(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})"
_TIME = r"(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?(?:[\s\u202f\u00a0]*([AaPp])\.?\s?[Mm]\.?)?"
ANDROID = re.compile(rf"{_DATE},?\s{_TIME}\s[-\u2013]\s(.*)", re.S)
IOS = re.compile(rf"\[{_DATE},?\s{_TIME}\]\s(.*)", re.S)
_INVISIBLE = "\u200e\u200f\ufeff\u202a\u202b\u202c\u202d\u202e"  # marks WhatsApp puts around names and lines

_MEDIA = re.compile(
    r"<(?:Media omitted|Medien ausgeschlossen|Multimedia omitido|Médias omis|Media weggelaten|Mídia oculta|"
    r"Multimedia omessi|[^<>]*(?:omitted|omitido|omis|ausgeschlossen|weggelaten|oculta|omessi|省略)[^<>]*)>"
    r"|(?:image|video|audio|sticker|GIF|document|Contact card|video note|voice message) omitted"
    r"|<attached: [^<>]+>|\S.* \(file attached\)|location: https?://\S+|Live location shared|POLL:.*|null"
    r"|\S+\.(?:jpe?g|png|webp|gif|opus|ogg|mp[34]|m4a|pdf|vcf)",
    re.I)
_DELETED = re.compile(
    r"(?:This message was deleted|You deleted this message|Diese Nachricht wurde gelöscht|Du hast diese Nachricht "
    r"gelöscht|Se eliminó este mensaje|Eliminaste este mensaje|Ce message a été supprimé|Vous avez supprimé ce "
    r"message|此消息已删除|你删除了此消息)\.?", re.I)
_SYSTEM = re.compile(r"(?:Missed (?:voice|video) call|Messages and calls are end-to-end encrypted\b.*|"
                     r"Waiting for this message.*)", re.I | re.S)
_EDITED = re.compile(r"\s*<[^<>]*(?:edited|bearbeitet|editado|modifié|已编辑)[^<>]*>\s*$", re.I)


def header(line: str) -> tuple[re.Match, bool] | None:
    """(the date-time match of a message line, whether it is the iOS form), or None for a continuation line."""
    text = line.lstrip(_INVISIBLE)
    for pattern, ios in ((IOS, True), (ANDROID, False)):
        m = pattern.match(text)
        if m is not None:
            return m, ios
    return None


def sniff(head: str, suffix: str) -> bool:
    """A .txt file whose first non-blank line is a WhatsApp message line."""
    first = next((line for line in head.splitlines() if line.strip(" " + _INVISIBLE)), "")
    return suffix in SUFFIXES and header(first) is not None


def _order(found: list[re.Match], forced: str) -> str:
    if forced != "auto":
        return forced
    if any(len(m.group(1)) == 4 for m in found):
        return "ymd"
    if any(int(m.group(1)) > 12 for m in found):
        return "dmy"
    if any(int(m.group(3)) > 12 for m in found):
        return "mdy"
    if found and found[0].group(2) == ".":
        return "dmy"
    return "mdy" if any(m.group(8) for m in found) else "dmy"


def _when(m: re.Match, order: str) -> datetime:
    a, b, c = m.group(1), m.group(3), m.group(4)
    y, mo, d = {"dmy": (c, b, a), "mdy": (c, a, b), "ymd": (a, b, c)}[order]
    year = int(y) + (2000 if len(y) <= 2 else 0)
    hour, minute, second = int(m.group(5)), int(m.group(6)), int(m.group(7) or 0)
    if m.group(8):  # 12-hour clock
        hour = hour % 12 + (12 if m.group(8).lower() == "p" else 0)
    return datetime(year, int(mo), int(d), hour, minute, second)


def parse(path: Path, opts: ChatOptions) -> Parsed:
    """The messages of one WhatsApp export (see the module docstring)."""
    mark, lines = text_lines(path, "whatsapp")
    parsed = Parsed("whatsapp", path, mark)
    entries: list[list] = []  # [line number, header match, is iOS, text lines]
    for lineno, text, reason in lines:
        if text is None:
            parsed.items.append(Dropped(lineno, reason))
            continue
        text = text.rstrip("\r\n")
        found = header(text)
        if found is not None:
            entries.append([lineno, found[0], found[1], [found[0].group(9)]])
        elif entries:
            entries[-1][3].append(text)
        elif text.strip(" " + _INVISIBLE):
            parsed.items.append(Dropped(lineno, "text before the first message line"))
    order = _order([e[1] for e in entries], opts.date_order)
    messages = []
    for lineno, m, ios, body in entries:
        try:
            when = epoch(_when(m, order))
        except ValueError:
            raise OwnGPTError(f"{parsed.loc(lineno)}: {m.group(0)[:24]!r} is not a date in {order} order; give the "
                              "order with --date-order dmy|mdy|ymd") from None
        item = _message(lineno, "\n".join(body), ios, when, path.name)
        parsed.items.append(item)
        if isinstance(item, Message):
            messages.append(item)
    parsed.items.sort(key=lambda i: i.line)
    mark_groups(messages)
    return parsed


def _message(lineno: int, rest: str, ios: bool, when: float, chat: str) -> Message | Dropped:
    speaker, sep, text = rest.partition(": ")
    if not sep or '"' in speaker or len(speaker) > 60 or not speaker.strip():
        return Dropped(lineno, "system line")  # "Alice added Bob", "Messages and calls are end-to-end encrypted."
    marked = text.startswith("\u200e")  # iOS marks media and system lines with U+200E
    text = _EDITED.sub("", text.strip(_INVISIBLE)).strip()
    first, _, caption = text.partition("\n")
    if _MEDIA.fullmatch(first.strip(_INVISIBLE)):
        if not caption.strip():
            return Dropped(lineno, "media (left out of the export)")
        text = caption.strip()  # Android puts a photo's caption on the lines after its file name
    if _DELETED.fullmatch(text):
        return Dropped(lineno, "deleted message")
    if _SYSTEM.fullmatch(text) or (ios and marked):
        return Dropped(lineno, "system line")
    if not text:
        return Dropped(lineno, "empty message")
    return Message(chat, speaker.strip(_INVISIBLE + " "), "", when, text, lineno)
