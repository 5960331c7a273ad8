"""What every chat-export reader produces, and the choices that turn it into training conversations.

A reader (wechat.py, qq.py, telegram.py, whatsapp.py) parses one file into a `Parsed`: its messages in file order
(`Message`: chat, speaker, time, text, line) and, in the same order, everything it left out (`Dropped`: media,
system notices, revoked or forwarded messages, each with its line and a reason). `ChatOptions` holds the user's
choices (who is me, the silence that starts a new session, group chats, the block list); `owner_problem` decides
which messages are mine, or says why none is (a message that lists the speakers it found); `resolve_owner` raises it.
Every location and error names the file as `scrubbed` shows it (owngpt/data/pii.py: no phone number of a file name).

A spec may carry its own owner after a `?`, for verbs that take raw exports but no --me of their own:
`whatsapp:chat.txt?me=Alice` (several: `?me=Alice&me=12345`; also `gap=30m`, `groups=merge`, `date-order=dmy`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, quote

from owngpt.config import parse_duration
from owngpt.data.clean import CleanConfig, quoted
from owngpt.data.encoding import Line, file_encoding, iter_lines
from owngpt.data.pii import scrubbed
from owngpt.data.records import Skip
from owngpt.data.wordlist import ContentFilter
from owngpt.errors import OwnGPTError

GROUP_MODES = ("names", "merge", "skip")
DATE_ORDERS = ("auto", "dmy", "mdy", "ymd")
NAMES = {"wechat": "WeChat", "qq": "QQ", "telegram": "Telegram", "whatsapp": "WhatsApp"}


@dataclass(frozen=True)
class ChatOptions:
    """How chat exports become conversations (`owngpt prepare/clone --me ... --session-gap ...`)."""

    me: tuple[str, ...] = ()  # my display names or ids (any of them); WeChat's is_sender and a Telegram full
    # export's own account decide without it
    session_gap: float = 3600.0  # seconds of silence after which a new conversation starts
    groups: str = "names"  # group chats: "names" (others' turns as 'Name: text' lines), "merge" (no names), "skip"
    date_order: str = "auto"  # WhatsApp dates: auto | dmy | mdy | ymd
    block_words: tuple[str, ...] = ()  # a message holding one of these (or matching a pattern) is dropped whole
    block_patterns: tuple[str, ...] = ()
    block_source: str = ""  # the block list's file, for reports

    def __post_init__(self) -> None:
        if self.groups not in GROUP_MODES:
            raise OwnGPTError(f"--groups must be one of {', '.join(GROUP_MODES)}, not {self.groups!r}")
        if self.date_order not in DATE_ORDERS:
            raise OwnGPTError(f"--date-order must be one of {', '.join(DATE_ORDERS)}, not {self.date_order!r}")
        if not self.session_gap > 0:
            raise OwnGPTError(f"--session-gap must be a positive duration such as 1h or 30m, not {self.session_gap}")

    def block_filter(self) -> ContentFilter | None:
        """The block list as THE word-list matcher, or None when there is none."""
        if not self.block_words and not self.block_patterns:
            return None
        return ContentFilter(self.block_words, self.block_patterns, source=self.block_source or "inline")


def with_block_list(opts: ChatOptions, words: ContentFilter | None) -> ChatOptions:
    """`opts` with the words and patterns of a loaded word list (owngpt/data/wordlist.py) as its block list."""
    if words is None:
        return opts
    return replace(opts, block_words=tuple(words.words), block_patterns=tuple(words.patterns),
                   block_source=words.source)


@dataclass(slots=True)
class Message:
    """One text message. `time` is in seconds (a local time read as UTC: only differences matter); `mine` is the
    export's own owner flag where it has one (WeChat's is_sender), else None until `resolve_owner`."""

    chat: str
    speaker: str
    speaker_id: str
    time: float
    text: str
    line: int
    mine: bool | None = None
    group: bool = False


@dataclass(slots=True)
class Dropped:
    """Something in the export that is not a text message to train on, with where it was and why."""

    line: int
    reason: str


@dataclass
class Parsed:
    """One export read: its messages and drops in file order."""

    fmt: str
    path: Path
    mark: str = ""  # " [gb18030]" / " [utf-16]" for converted files (owngpt/data/encoding.py)
    items: list[Message | Dropped] = field(default_factory=list)
    owner_flag: str = ""  # how the export marks my messages itself ("is_sender=1"), if it does

    @property
    def where(self) -> str:
        """The file as reports and errors name it (scrubbed, with its encoding mark)."""
        return f"{scrubbed(str(self.path))}{self.mark}"

    def loc(self, line: int) -> str:
        return f"{scrubbed(str(self.path))}:{line}{self.mark}"

    @property
    def messages(self) -> list[Message]:
        return [m for m in self.items if isinstance(m, Message)]


def text_lines(path: Path, fmt: str) -> tuple[str, Iterator[Line]]:
    """(loc mark, the lines of a text export) decoded as owngpt/data/encoding.py judges the file (UTF-8, UTF-16,
    GB18030); a binary file is an error naming the format it was read as."""
    got = file_encoding(path, str(path))
    if isinstance(got, Skip):
        raise OwnGPTError(f"{scrubbed(str(path))}: a binary file, not a {NAMES[fmt]} export")
    encoding, mark = got
    return mark, iter_lines(path, encoding)


def epoch(when: datetime) -> float:
    """Seconds of a naive local date-time read as UTC (exports give local times; only differences matter)."""
    return when.replace(tzinfo=timezone.utc).timestamp()


def mark_groups(messages: list[Message]) -> None:
    """Formats that do not say which chats are groups: a chat with more than two speakers is one."""
    speakers: dict[str, set[str]] = {}
    for m in messages:
        speakers.setdefault(m.chat, set()).add(m.speaker_id or m.speaker)
    for m in messages:
        m.group = len(speakers[m.chat]) > 2


# ----------------------------------------------------------------------------- who is me


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def is_me(m: Message, me: tuple[str, ...]) -> bool:
    """Whether --me names the speaker of `m`: by display name or id, case-insensitively (a Telegram id also
    without its 'user' prefix)."""
    names = {_key(m.speaker), _key(m.speaker_id)} - {""}
    if m.speaker_id.startswith("user"):
        names.add(m.speaker_id[4:])
    return any(_key(x) in names for x in me)


def speakers_line(messages: list[Message], most: int = 8) -> str:
    """'Alice (30), Bob [12345] (28), ... and 3 more': who wrote text messages, most first, each name scrubbed of
    personal data (a WhatsApp contact without a name is its phone number)."""
    counts = Counter((m.speaker, m.speaker_id) for m in messages)
    shown = []
    for (name, sid), n in counts.most_common(most):
        who = f"{name} [{sid}]" if sid and sid != name else name
        shown.append(f"{quoted(who, CleanConfig(), limit=80)} ({n})")
    more = f" and {len(counts) - most} more" if len(counts) > most else ""
    return ", ".join(shown) + more if shown else "(none)"


NO_TEXT, NO_OWNER, NOT_MINE = "no text", "no owner", "not mine"  # why no message of an export is mine


@dataclass(frozen=True)
class OwnerProblem:
    """Why no message of an export is mine: `kind` (NO_TEXT: no text messages at all; NO_OWNER: nothing says
    which speaker I am; NOT_MINE: --me names nobody there, or the export's owner wrote nothing), the file as
    reports name it, and what to tell the user (with the speakers found)."""

    kind: str
    where: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.where}: {self.detail}"


def owner_problem(parsed: Parsed, me: tuple[str, ...]) -> OwnerProblem | None:
    """Set `mine` on every message: the export's own flag where it has one, else --me. None when some message is
    mine, else why none is."""
    messages = parsed.messages
    if not messages:
        return OwnerProblem(NO_TEXT, parsed.where, f"no text messages found in this {NAMES[parsed.fmt]} export "
                                                   "(only media or system lines, or not an export of this kind)")
    undecided = [m for m in messages if m.mine is None]
    if undecided and not me:
        return OwnerProblem(NO_OWNER, parsed.where, "which speaker are you? Give --me NAME (or an id; where a verb "
                                                    "has no --me, name the file as FILE?me=NAME); speakers found: "
                                                    f"{speakers_line(messages)}")
    for m in undecided:
        m.mine = is_me(m, me)
    if any(m.mine for m in messages):
        return None
    if undecided:
        names = ", ".join(repr(quoted(x, CleanConfig(), limit=60)) for x in me)
        return OwnerProblem(NOT_MINE, parsed.where, f"--me {names} names nobody here; speakers found: "
                                                    f"{speakers_line(messages)}")
    return OwnerProblem(NOT_MINE, parsed.where, f"you wrote nothing here (no message has {parsed.owner_flag}): "
                                                "there is nothing to learn your voice from")


def resolve_owner(parsed: Parsed, me: tuple[str, ...]) -> None:
    """As owner_problem, raising its message as an OwnGPTError."""
    problem = owner_problem(parsed, me)
    if problem is not None:
        raise OwnGPTError(problem.message)


# ----------------------------------------------------------------------------- specs

_QUERY = re.compile(r"\?((?:me|gap|groups|date-order)=[^?]*)$")


def has_query(spec: str) -> bool:
    """Whether the spec carries chat options of its own (`chat.txt?me=NAME`)."""
    return _QUERY.search(spec) is not None


def split_query(spec: str, opts: ChatOptions) -> tuple[str, ChatOptions]:
    """(the spec without its `?me=...` part, opts with that part applied; --me names from it come first)."""
    m = _QUERY.search(spec)
    if m is None:
        return spec, opts
    # '+' is itself here (`?me=+14155552671`), not the space of a web form: only %XX escapes are decoded
    query = parse_qs(m.group(1).replace("+", "%2B"), keep_blank_values=False)
    changes: dict = {}
    if "me" in query:
        changes["me"] = tuple(query["me"]) + tuple(x for x in opts.me if x not in query["me"])
    if "gap" in query:
        changes["session_gap"] = parse_duration(query["gap"][-1])
    if "groups" in query:
        changes["groups"] = query["groups"][-1]
    if "date-order" in query:
        changes["date_order"] = query["date-order"][-1]
    return spec[: m.start()], replace(opts, **changes)


def with_owner(spec: str, me: list[str] | tuple[str, ...]) -> str:
    """`spec` carrying these --me names (see split_query), for verbs that read raw exports but have no --me."""
    if not me:
        return spec
    names = "&".join(f"me={quote(x, safe='')}" for x in me)
    return spec + ("&" if _QUERY.search(spec) else "?") + names
