"""WhatsApp exports (owngpt/data/chats/whatsapp.py): both forms, locale date orders, multi-line messages, media and
system lines, group chats."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chat_exports import PHONE, WHATSAPP_ANDROID, WHATSAPP_IOS
from helpers import write
from owngpt.data.chats.export import detect_format, export_records, read_export
from owngpt.data.chats.model import ChatOptions
from owngpt.data.records import Conversation, Skip
from owngpt.errors import OwnGPTError


def records(path, **opts):
    out = list(export_records(path, fmt="whatsapp", opts=ChatOptions(**opts)))
    convs = [r.messages for r in out if isinstance(r, Conversation)]
    skips = [(int(r.loc.rsplit(":", 1)[1]), r.reason) for r in out if isinstance(r, Skip)]
    return convs, sorted(skips)


def test_android_export_gives_my_replies_as_the_assistant_and_counts_what_it_leaves_out(tmp_path):
    path = write(tmp_path / "WhatsApp Chat with Sam.txt", WHATSAPP_ANDROID)
    assert detect_format(path) == "whatsapp"
    convs, skips = records(path, me=("alex",))  # --me is case-insensitive
    assert convs == [
        [{"role": "user", "content": "hey! are we still on for friday?"},
         {"role": "assistant", "content": "yes!! 7pm at the usual place\nbring the board game\nand the snacks 🍿"},
         {"role": "user", "content": "is this the one?"},
         {"role": "assistant", "content": "haha yes that one"}],
        [{"role": "user", "content": "yes, what's your number again?"},
         {"role": "assistant", "content": f"it's {PHONE}"},  # "<This message was edited>" cut; scrubbed later
         {"role": "user", "content": "look at this view"},  # a photo's caption stays, its file name goes
         {"role": "assistant", "content": "wow 😍"}],
    ]
    assert skips == [
        (1, "system line"), (6, "media (left out of the export)"), (9, "deleted message"),
        (10, "my messages that open a session (nothing to reply to)"),
        (16, "session with no reply from me"),
        (18, "my messages that open a session (nothing to reply to)"), (18, "session with no reply from me"),
    ]
    parsed = read_export(path, "whatsapp", ChatOptions(me=("Alex",)))
    assert [(m.speaker, m.mine) for m in parsed.messages][:3] == [("Sam", False), ("Alex", True), ("Alex", True)]
    assert not any(m.group for m in parsed.messages)
    first = parsed.messages[0]
    assert datetime.fromtimestamp(first.time, timezone.utc) == datetime(2024, 1, 14, 21, 2, tzinfo=timezone.utc)


def test_ios_group_export_names_the_other_speakers_or_merges_or_skips_them(tmp_path):
    path = write(tmp_path / "_chat.txt", WHATSAPP_IOS)
    assert detect_format(path) == "whatsapp"
    convs, skips = records(path, me=("小明",))
    assert convs == [
        [{"role": "user", "content": f"小红: 明天去爬山吗？\n{PHONE}: 算我一个\n小刚: 我去！"},
         {"role": "assistant", "content": "好啊，几点集合？\n我带水\n还有面包"},
         {"role": "user", "content": "小红: 八点，老地方"},
         {"role": "assistant", "content": "收到 👌"}],
        [{"role": "user", "content": "小刚: 下次什么时候？\n小红: 周六吧"},
         {"role": "assistant", "content": "周六可以"}],  # 13 February: day first, a new session
    ]
    assert skips == [(1, "system line"), (8, "media (left out of the export)"), (11, "media (left out of the export)")]
    merged, _ = records(path, me=("小明",), groups="merge")
    assert merged[1][0]["content"] == "下次什么时候？\n周六吧"
    skipped, reasons = records(path, me=("小明",), groups="skip")
    assert skipped == [] and [r for _, r in reasons].count("group chat (left out: --groups skip)") == 2


@pytest.mark.parametrize("line, order, expected", [
    ("01/02/24, 10:00 - A: x", "auto", datetime(2024, 2, 1, 10, 0)),  # slashes, 24-hour clock: day first
    ("01/02/24, 10:00 AM - A: x", "auto", datetime(2024, 1, 2, 10, 0)),  # AM/PM: month first (US)
    ("01.02.24, 22:05 - A: x", "auto", datetime(2024, 2, 1, 22, 5)),  # dots: day first (German)
    ("2024-02-01 22:05 - A: x", "auto", datetime(2024, 2, 1, 22, 5)),  # year first
    ("01/02/24, 10:00 - A: x", "mdy", datetime(2024, 1, 2, 10, 0)),  # forced
    ("[01/02/2024, 12:30:15 AM] A: x", "auto", datetime(2024, 1, 2, 0, 30, 15)),  # iOS, US: 12 AM is midnight
])
def test_locale_date_orders(tmp_path, line, order, expected):
    path = write(tmp_path / "c.txt", f"{line}\n")
    (m,) = read_export(path, "whatsapp", ChatOptions(me=("A",), date_order=order)).messages
    assert datetime.fromtimestamp(m.time, timezone.utc).replace(tzinfo=None) == expected


def test_a_date_that_does_not_fit_the_order_names_the_line_and_the_option(tmp_path):
    path = write(tmp_path / "c.txt", "12/31/23, 21:00 - A: x\n01/01/24, 09:00 - B: y\n")
    assert len(read_export(path, "whatsapp", ChatOptions(me=("A",))).messages) == 2  # 31 > 12: month first
    with pytest.raises(OwnGPTError, match=r"c\.txt:1: .* not a date in dmy order; .*--date-order"):
        read_export(path, "whatsapp", ChatOptions(me=("A",), date_order="dmy"))


def test_plain_text_is_not_taken_for_an_export(tmp_path):
    notes = write(tmp_path / "notes.txt", "Shopping list\n12/31/23 milk\n")
    assert detect_format(notes) is None
    with pytest.raises(OwnGPTError, match="no text messages found in this WhatsApp export"):
        read_export(notes, "whatsapp", ChatOptions(me=("A",)))
