"""WhatsApp's "Export chat" text file (without media), in its two forms:

    Android   12/31/23, 9:41 PM - Alice: see you at 8        (also 31/12/2023, 21:41 - ... and 31.12.23, 21:41 - ...)
    iOS       [31/12/2023, 21:41:05] Alice: see you at 8     (system and media lines marked with U+200E)

A line that does not start with a date is the next line of the message before it (multi-line messages). The
date order follows the locale the phone used: day/month/year or month/day/year (or year first), decided from the
file's own dates (a first number above 12 means day first, a second above 12 month first; otherwise dots mean day
first and AM/PM month first), or forced with ChatOptions.date_order. Two-digit years are 20xx. Android writes no
seconds, iOS does; a file is recognised as an export when its first line and at least one more are message lines
of one form (the same date separator and clock), so a log file with timestamps is not taken for one.

Left out and counted, in the forms the exports write them: media (`<Media omitted>`, `image omitted`, `<attached:
...>`, `NAME (file attached)`, locations, polls), deleted messages ("This message was deleted"), system lines
(lines without a speaker; the encryption notice, missed calls; on iOS the lines marked with U+200E that announce
joins, subject changes and the like). `<This message was edited>` is cut from the end of a message. A message of
someone's that merely looks like one of these (a file name, "null", a link iOS marks) stays text. The export has
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
_DATE = r"(?P<a>\d{1,4})(?P<sep>[./-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})"
_HM = r"(?P<h>\d{1,2})[:.](?P<m>\d{2})"
_NOON = r"(?:[\s\u202f\u00a0]*(?P<noon>[AaPp])\.?\s?[Mm]\.?)?"
ANDROID = re.compile(rf"{_DATE},?\s{_HM}(?P<s>){_NOON}\s[-\u2013]\s(?P<rest>.*)", re.S)  # never with seconds
IOS = re.compile(rf"\[{_DATE},?\s{_HM}(?:[:.](?P<s>\d{{2}}))?{_NOON}\]\s(?P<rest>.*)", re.S)
_INVISIBLE = "\u200e\u200f\ufeff\u202a\u202b\u202c\u202d\u202e"  # marks WhatsApp puts around names and lines
_SNIFF_LINES = 40

_MEDIA = re.compile(
    r"<(?:Media omitted|Medien ausgeschlossen|Multimedia omitido|Médias omis|Media weggelaten|Mídia oculta|"
    r"Multimedia omessi|[^<>]*(?:omitted|omitido|omis|ausgeschlossen|weggelaten|oculta|omessi|省略)[^<>]*)>"
    r"|(?:.* )?(?:image|video|audio|sticker|GIF|document|Contact card|video note|voice message) omitted"
    r"|<attached: [^<>]+>|\S.* \(file attached\)|location: https?://\S+|Live location shared",
    re.I)
_DELETED = re.compile(
    r"(?:This message was deleted|You deleted this message|Diese Nachricht wurde gelöscht|Du hast diese Nachricht "
    r"gelöscht|Se eliminó este mensaje|Eliminaste este mensaje|Ce message a été supprimé|Vous avez supprimé ce "
    r"message|此消息已删除|你删除了此消息)\.?", re.I)
_SYSTEM = re.compile(r"(?:Missed (?:voice|video) call|Messages and calls are end-to-end encrypted\b.*|"
                     r"Waiting for this message.*)", re.I | re.S)
# Group events: iOS writes them as a message of the group (or of the actor) marked with U+200E; Android without a
# speaker, which only a name in quotes holding ": " can make look like one ('Bo changed the subject to "Trip: June"')
_EVENT = re.compile(r"(?:.+ )?(?:added|removed|left|joined using this group's invite link|created (?:group|this "
                    r"group)|changed (?:the subject|this group's icon|the group description|the group name|their "
                    r"phone number|the group settings|to \+)|deleted this group's icon|pinned a message|(?:is|are) "
                    r"now an admin|You're now an admin|turned (?:on|off) disappearing messages).*", re.S)
_QUOTED_EVENT = re.compile(r'(?:(?!: ).)* (?:changed the subject|created group|changed the group name)\b.*"', re.S)
_EDITED = re.compile(rf"[\s{_INVISIBLE}]*<[^<>]*(?:edited|bearbeitet|editado|modifié|已编辑)[^<>]*>[\s{_INVISIBLE}]*$",
                     re.I)  # with the invisible marks iOS writes before it


def header(line: str) -> tuple[re.Match, bool] | None:
    """(the date-time match of a message line, whether it is the iOS form), or None for a continuation line."""
    text = line.lstrip(_INVISIBLE)
    for pattern, ios in ((IOS, True), (ANDROID, False)):
        m = pattern.match(text)
        if m is not None:
            return m, ios
    return None


def _form(found: tuple[re.Match, bool]) -> tuple:
    """What stays the same on every message line of one export: iOS or Android, the date separator, the clock."""
    m, ios = found
    return ios, m.group("sep"), bool(m.group("noon")), bool(m.group("s"))


def sniff(head: str, suffix: str) -> bool:
    """A .txt file whose first non-blank line and at least one more are message lines of the same form."""
    if suffix not in SUFFIXES:
        return False
    lines = [line for line in head.splitlines()[:_SNIFF_LINES] if line.strip(" " + _INVISIBLE)]
    found = [f for line in lines if (f := header(line)) is not None]
    return (bool(lines) and header(lines[0]) is not None and len(found) >= 2
            and len({_form(f) for f in found}) == 1)


def _order(found: list[re.Match], forced: str) -> str:
    if forced != "auto":
        return forced
    if any(len(m.group("a")) == 4 for m in found):
        return "ymd"
    if any(int(m.group("a")) > 12 for m in found):
        return "dmy"
    if any(int(m.group("b")) > 12 for m in found):
        return "mdy"
    if found and found[0].group("sep") == ".":
        return "dmy"
    return "mdy" if any(m.group("noon") for m in found) else "dmy"


def _when(m: re.Match, order: str) -> datetime:
    a, b, c = m.group("a"), m.group("b"), m.group("c")
    y, mo, d = {"dmy": (c, b, a), "mdy": (c, a, b), "ymd": (a, b, c)}[order]
    year = int(y) + (2000 if len(y) <= 2 else 0)
    hour, minute, second = int(m.group("h")), int(m.group("m")), int(m.group("s") or 0)
    if m.group("noon"):  # 12-hour clock
        hour = hour % 12 + (12 if m.group("noon").lower() == "p" else 0)
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
            entries.append([lineno, found[0], found[1], [found[0].group("rest")]])
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
    if not sep or not speaker.strip(_INVISIBLE + " ") or (not ios and _QUOTED_EVENT.fullmatch(rest)):
        return Dropped(lineno, "system line")  # "Alice added Bob", "Messages and calls are end-to-end encrypted."
    marked = text.startswith("\u200e")  # iOS marks media and system lines with U+200E (and links, too)
    text = _EDITED.sub("", text.strip(_INVISIBLE)).strip()
    first, _, caption = text.partition("\n")
    if _MEDIA.fullmatch(first.replace("\u200e", "").strip()) or (first.startswith("POLL:") and "\nOPTION: " in text):
        if not caption.strip() or first.startswith("POLL:"):
            return Dropped(lineno, "media (left out of the export)")
        text = caption.strip()  # Android puts a photo's caption on the lines after its file name
    if _DELETED.fullmatch(text):
        return Dropped(lineno, "deleted message")
    if _SYSTEM.fullmatch(text) or (ios and marked and _EVENT.fullmatch(text)):
        return Dropped(lineno, "system line")
    if not text:
        return Dropped(lineno, "empty message")
    return Message(chat, speaker.strip(_INVISIBLE + " "), "", when, text, lineno)
