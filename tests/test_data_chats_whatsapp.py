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
        (18, "session with no reply from me"),  # left out whole: counted once
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


def test_my_messages_that_look_like_file_names_or_start_with_a_mark_are_text(tmp_path):
    """Only the forms an export really writes are media or system lines: not a message that is just "null" or a
    file name (Android writes "NAME (file attached)"), not an iOS message whose text starts with U+200E (a link),
    not a speaker whose name holds a quote."""
    android = write(tmp_path / "a.txt", "1/1/24, 10:00 - Bo: send the notes?\n1/1/24, 10:01 - Al: report.pdf\n"
                                        "1/1/24, 10:02 - Bo: and the value?\n1/1/24, 10:03 - Al: null\n"
                                        '1/1/24, 10:04 - Ann "Nan" Lee: hi all\n1/1/24, 10:05 - Al: hi Nan\n'
                                        '1/1/24, 10:06 - Bo changed the subject to "Trip: June"\n'
                                        "1/1/24, 10:07 - Bo: IMG-0001.jpg (file attached)\n")
    convs, skips = records(android, me=("Al",))
    assert [m["content"] for c in convs for m in c if m["role"] == "assistant"] == ["report.pdf", "null", "hi Nan"]
    assert any(m["content"] == 'Ann "Nan" Lee: hi all' for c in convs for m in c)
    assert skips == [(7, "system line"), (8, "media (left out of the export)")]
    ios = write(tmp_path / "i.txt", "[01/02/2024, 10:00:00] Bo: got a link?\n"
                                    "[01/02/2024, 10:00:05] Al: \u200ehttps://example.com/page\n"
                                    "[01/02/2024, 10:00:09] Bo: \u200eimage omitted\n"
                                    "[01/02/2024, 10:00:10] Group: \u200eBo added Cy\n")
    convs, skips = records(ios, me=("Al",))
    assert convs[0][1] == {"role": "assistant", "content": "https://example.com/page"}
    assert skips == [(3, "media (left out of the export)"), (4, "system line")]


def test_a_log_file_is_not_taken_for_an_android_export(tmp_path):
    log = write(tmp_path / "server.log.txt", "2023-05-01 20:15:02 - INFO: server started\n"
                                             "2023-05-01 20:15:03 - WARN: disk: low\n")
    assert detect_format(log) is None  # Android exports never write seconds
    one = write(tmp_path / "notes.txt", "1/1/24, 10:00 - Todo: buy milk\nthen the rest of my notes\nand more\n")
    assert detect_format(one) is None  # one matching line does not make an export
    mixed = write(tmp_path / "mixed.txt", "1/1/24, 10:00 - A: x\n[01/02/2024, 10:00:05] B: y\n")
    assert detect_format(mixed) is None  # two forms at once: no export writes that
    assert detect_format(write(tmp_path / "c.txt", "1/1/24, 10:00 - A: x\n1/1/24, 10:01 - B: y\n")) == "whatsapp"


def test_an_ios_edited_message_keeps_no_invisible_mark(tmp_path):
    path = write(tmp_path / "_chat.txt", "[03/02/2024, 19:00:05] Bo: hi\n"
                                         "[03/02/2024, 19:00:06] Alice: hey \u200e<This message was edited>\n")
    convs, _ = records(path, me=("Alice",))
    assert convs == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]]
