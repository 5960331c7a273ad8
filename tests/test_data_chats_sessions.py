"""Messages → conversations (owngpt/data/chats/sessions.py) and chat exports wherever files are read
(owngpt/data/sources.py, `prepare`): sessions at the silence threshold, merged turns, the loss on my turns only,
the block list, prefixes and `?me=`, and no personal data in any output."""

from __future__ import annotations

import json

import pytest

from chat_exports import EMAIL, PHONE, QQ_EXPORT, WHATSAPP_ANDROID, WHATSAPP_IOS, telegram_chat, wechat_csv
from chat_exports import write_telegram
from helpers import write
from owngpt.data.chats.model import ChatOptions, Message, with_owner
from owngpt.data.chats.sessions import split_sessions, turns_of
from owngpt.data.records import Conversation, Document, Skip
from owngpt.data.sources import ReadOptions, read_sources
from owngpt.errors import OwnGPTError


def msg(t: float, who: str, text: str, line: int = 1) -> Message:
    return Message("c", who, "", t, text, line, mine=who == "me")


def test_a_new_session_starts_only_after_a_silence_longer_than_the_gap():
    messages = [msg(0, "them", "a"), msg(3600, "me", "b"), msg(7201, "them", "c"), msg(7202, "me", "d")]
    sessions = split_sessions(messages, gap=3600)
    assert [[m.text for m in s] for s in sessions] == [["a", "b"], ["c", "d"]]  # 3600 s: same; 3601 s: new
    assert len(split_sessions(messages, gap=3601)) == 1
    assert len(split_sessions(messages, gap=1)) == 3


def test_consecutive_messages_of_one_side_merge_into_one_turn():
    turns = turns_of([msg(0, "them", "hi"), msg(1, "them", "you there?"), msg(2, "me", "yes"), msg(3, "me", "hi!")])
    assert [(t.mine, t.text(names=False)) for t in turns] == [(False, "hi\nyou there?"), (True, "yes\nhi!")]
    group = turns_of([msg(0, "Ann", "a"), msg(1, "Ann", "b"), msg(2, "Bo", "c"), msg(3, "Ann", "d")])
    assert group[0].text(names=True) == "Ann: a\nb\nBo: c\nAnn: d"


def test_the_loss_mask_covers_only_my_turns(tmp_path):
    from owngpt.tokenizer import render_conversation, train_char

    path = write(tmp_path / "chat.txt", WHATSAPP_ANDROID)
    convs = [r.messages for r in read_sources([str(path)], ReadOptions(chats=ChatOptions(me=("Alex",))))
             if isinstance(r, Conversation)]
    tok = train_char([WHATSAPP_ANDROID])
    for messages in convs:
        ids, mask = render_conversation(tok, messages)
        learned = tok.decode([i for i, m in zip(ids, mask) if m])
        mine = [m["content"] for m in messages if m["role"] == "assistant"]
        assert learned == "".join(f"{text}<|im_end|>" for text in mine)
        assert all(m["content"] not in learned for m in messages if m["role"] == "user")


def test_the_block_list_drops_whole_messages_in_any_width(tmp_path):
    path = write(tmp_path / "chat.txt", "1/1/24, 10:00 - Bo: hi\n1/1/24, 10:01 - Me: secret plan\n"
                                        "1/1/24, 10:02 - Me: ok\n1/1/24, 10:03 - Bo: ＳＥＣＲＥＴ again\n"
                                        "1/1/24, 10:04 - Me: order 12345 shipped\n")
    opts = ChatOptions(me=("Me",), block_words=("secret",), block_patterns=(r"order \d+",))
    records = list(read_sources([str(path)], ReadOptions(chats=opts)))
    assert [r.messages for r in records if isinstance(r, Conversation)] == [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]]
    assert [(r.loc, r.reason) for r in records if isinstance(r, Skip)] == [
        (f"{path}:2", "blocked by the block list"), (f"{path}:4", "blocked by the block list"),
        (f"{path}:5", "blocked by the block list")]


def exports(tmp_path):
    folder = tmp_path / "exports"
    write(folder / "wa_android.txt", WHATSAPP_ANDROID)
    write(folder / "wa_ios.txt", WHATSAPP_IOS)
    write(folder / "qq.txt", QQ_EXPORT.lstrip("\ufeff").encode("gbk"))
    write_telegram(folder / "result.json", telegram_chat())
    write(folder / "wx.csv", wechat_csv())
    write(folder / "notes.txt", "Just a note, not a chat.\n")
    return folder


ME = ("Alex", "小明", "987654321")  # my names on the different apps


def test_a_folder_of_exports_is_recognised_file_by_file(tmp_path):
    folder = exports(tmp_path)
    records = list(read_sources([str(folder)], ReadOptions(chats=ChatOptions(me=ME))))
    convs = [r for r in records if isinstance(r, Conversation)]
    assert [r.text for r in records if isinstance(r, Document)] == ["Just a note, not a chat.\n"]
    assert sorted({c.loc.split(":")[0].rsplit("/", 1)[1] for c in convs}) == [
        "qq.txt", "result.json", "wa_android.txt", "wa_ios.txt", "wx.csv"]
    assert len(convs) == 2 + 2 + 2 + 2 + 2 and all(c.source == str(folder) for c in convs)
    # forced on a folder: its files of that format's suffix that no reader recognises are read as that format (so
    # notes.txt is now a mistake), recognised ones as what they are; files of other suffixes are left out, reported
    with pytest.raises(OwnGPTError, match=r"notes\.txt: no text messages found in this WhatsApp export"):
        read_sources([f"whatsapp:{folder}"], ReadOptions(chats=ChatOptions(me=ME)))
    (folder / "notes.txt").unlink()
    forced = list(read_sources([f"whatsapp:{folder}"], ReadOptions(chats=ChatOptions(me=ME))))
    assert {r.loc.split(":")[0].rsplit("/", 1)[1] for r in forced if isinstance(r, Conversation)} == {
        "qq.txt", "wa_android.txt", "wa_ios.txt"}
    assert sorted(r.loc.rsplit("/", 1)[1] for r in forced if isinstance(r, Skip) and "file type" in r.reason) == [
        "result.json", "wx.csv"]


def test_prefixes_and_owners_in_the_spec(tmp_path):
    path = write(tmp_path / "chat.txt", WHATSAPP_ANDROID)
    spec = with_owner(f"whatsapp:{path}", ["Alex"])
    assert spec == f"whatsapp:{path}?me=Alex"
    assert sum(isinstance(r, Conversation) for r in read_sources([spec])) == 2
    with pytest.raises(OwnGPTError, match=r"unknown format prefix 'line:'; known: wechat:FILE, qq:FILE"):
        read_sources([f"line:{path}"])
    with pytest.raises(OwnGPTError, match=r"which speaker are you\? Give --me NAME"):
        read_sources([str(path)], ReadOptions(chats=ChatOptions()))  # chat options given: checked before reading
    with pytest.raises(OwnGPTError, match=r"which speaker are you\? Give --me NAME"):
        read_sources([f"whatsapp:{path}"])  # so is a prefix
    assert [type(r) for r in read_sources([str(path)])] == [Document]  # nothing says it is a chat: plain text
    notes = write(tmp_path / "notes.txt", "hello\n")
    with pytest.raises(OwnGPTError, match="no text messages found in this QQ export"):
        read_sources([f"qq:{notes}"])


def test_the_fingerprint_follows_a_prefixed_export(tmp_path):
    from owngpt.data.fingerprint import input_fingerprint_data

    path = write(tmp_path / "chat.txt", WHATSAPP_ANDROID)
    (entry,) = input_fingerprint_data([f"whatsapp:{path}?me=Alex"])
    assert entry[1][0] == str(path) and entry[1][1] == path.stat().st_size


def test_prepare_writes_no_personal_data_anywhere(tmp_path):
    from owngpt.data.prepare import PrepareConfig, prepare
    from owngpt.data.report import check_accounting

    folder = exports(tmp_path)
    out = tmp_path / "data"
    report = prepare([str(folder)], out, PrepareConfig(chats=ChatOptions(me=ME), tokenizer_kind="char",
                                                       split=(1.0, 0.0, 0.0)), progress=False)
    check_accounting(report)
    assert report["total"]["conversations"]["in"] == 10 and report["converted_encodings"]["gb18030"] > 0
    assert report["skips"]["by_reason"]["media (left out of the export)"] == 3
    assert report["skips"]["by_reason"]["session with no reply from me"] == 3
    kept = [json.loads(line)["messages"] for line in (out / "conversations" / "train.jsonl").read_text().splitlines()]
    assert {"role": "assistant", "content": "it's <PHONE>"} in [m for c in kept for m in c]
    assert any("<PHONE>: 算我一个" in m["content"] for c in kept for m in c)  # a speaker named by a phone number
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for value in (PHONE, "555-0134", EMAIL, "meimei@example.com"):
                assert value.encode() not in data, (f, value)


def test_a_very_long_session_is_cut_into_windows_with_the_loss_on_my_turns_only(tmp_path):
    """Issue 18: very long sessions are split as SFT splits every long conversation (render_windows)."""
    from owngpt.data.conversations import render_windows
    from owngpt.tokenizer import train_char

    lines = []
    for i in range(120):  # one session: a message a minute for two hours
        who = "Me" if i % 2 else "Bo"
        lines.append(f"1/1/24, {10 + i // 60}:{i % 60:02d} - {who}: {'reply' if i % 2 else 'question'} number {i}")
    path = write(tmp_path / "long.txt", "\n".join(lines) + "\n")
    (conv,) = [r.messages for r in read_sources([str(path)], ReadOptions(chats=ChatOptions(me=("Me",))))
               if isinstance(r, Conversation)]
    assert len(conv) == 120
    tok = train_char(["\n".join(lines)])
    windows = render_windows(tok, conv, limit=256)
    assert len(windows) > 10 and all(len(ids) <= 256 for ids, _ in windows)
    learned = [tok.decode([i for i, m in zip(ids, mask) if m]) for ids, mask in windows]
    mine = [m["content"] for m in conv if m["role"] == "assistant"]
    assert "".join(learned) == "".join(f"{t}<|im_end|>" for t in mine)  # every reply of mine once, nothing else
    for ids, mask in windows:  # each window opens with the question its first reply answers
        assert tok.decode(ids).startswith("<|im_start|>user\nquestion number")


def test_prepare_reads_plain_text_in_any_folder_and_an_unowned_export_as_a_document(tmp_path):
    from owngpt.data.prepare import PrepareConfig, prepare

    docs = tmp_path / "docs"
    write(docs / "server.log.txt", "2023-05-01 20:15:02 - INFO: server started\n"
                                   "2023-05-01 20:15:03 - WARN: disk: low\n")
    write(docs / "readme.txt", "plain doc\n")
    write(docs / "chat.txt", WHATSAPP_ANDROID)  # an export, but nothing says who I am in it
    report = prepare([str(docs)], tmp_path / "out", PrepareConfig(tokenizer_kind="char"), progress=False)
    assert report["total"]["documents"]["in"] == 3 and report["total"]["conversations"]["in"] == 0
    (note,) = report["chat_exports"]
    assert note["status"] == "document" and "give --me NAME to read it as a chat" in note["note"]
    # named with --me (or forced by a prefix) it is a chat, and a wrong reading is an error again
    with pytest.raises(OwnGPTError, match="which speaker are you"):
        read_sources([f"whatsapp:{docs / 'chat.txt'}"])


def test_a_chat_where_i_wrote_nothing_is_left_out_and_counted(tmp_path):
    from owngpt.data.prepare import PrepareConfig, prepare

    multi = tmp_path / "multi"
    write(multi / "a.txt", "1/1/24, 10:00 - Bo: hi\n1/1/24, 10:01 - Alice: hey\n")
    write(multi / "lurk.txt", "1/1/24, 10:00 - Carol: hi\n1/1/24, 10:01 - Dave: hey\n")
    report = prepare([str(multi)], tmp_path / "out", PrepareConfig(chats=ChatOptions(me=("Alice",)),
                                                                   tokenizer_kind="char"), progress=False)
    assert report["total"]["conversations"]["in"] == 1
    assert [(e["path"].rsplit("/", 1)[1], e["status"]) for e in report["chat_exports"]] == [
        ("a.txt", "chat"), ("lurk.txt", "left out")]
    assert any("lurk.txt: left out: --me 'Alice' names nobody here" in s for s in report["skips"]["listed"])
    with pytest.raises(OwnGPTError, match=r"lurk\.txt: --me 'Zed' names nobody here.*no message is yours in the 1 "
                                          r"other export either"):
        read_sources([str(multi / "lurk.txt"), str(multi / "a.txt")], ReadOptions(chats=ChatOptions(me=("Zed",))))


def test_a_phone_number_in_a_file_name_is_written_and_printed_nowhere(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app
    from owngpt.data.prepare import PrepareConfig, prepare

    number = "+1 415 555 2671"
    path = write(tmp_path / f"WhatsApp Chat with {number}.txt", WHATSAPP_ANDROID.replace("Sam", number))
    out = tmp_path / "out"
    prepare([str(path)], out, PrepareConfig(chats=ChatOptions(me=("Alex",)), tokenizer_kind="char"), progress=False)
    for f in out.rglob("*"):
        if f.is_file():
            assert b"555 2671" not in f.read_bytes(), f
    _register()
    for args in (["--dry-run"], ["--dry-run", "--me", "Nobody"]):
        result = CliRunner().invoke(app, ["prepare", str(path), "--me", "Alex", *args])
        shown = result.output + str(result.exception or "")
        assert "555 2671" not in shown and "<PHONE>" in shown, shown


def test_a_left_out_session_is_counted_once_under_one_reason(tmp_path):
    from owngpt.data.chats.export import export_records
    from owngpt.data.chats.sessions import NO_REPLY, OPENER

    path = write(tmp_path / "chat.txt", "1/1/24, 10:00 - Al: anyone?\n1/1/24, 10:01 - Al: hello?\n"  # only mine
                                        "1/2/24, 10:00 - Al: hi\n1/2/24, 10:01 - Bo: hey\n"  # mine, then no reply
                                        "1/3/24, 10:00 - Al: so\n1/3/24, 10:01 - Bo: yes?\n1/3/24, 10:02 - Al: ok\n")
    records = list(export_records(path, fmt="whatsapp", opts=ChatOptions(me=("Al",))))
    skips = sorted((int(r.loc.rsplit(":", 1)[1]), r.reason) for r in records if isinstance(r, Skip))
    assert skips == [(1, OPENER), (3, NO_REPLY), (5, OPENER)]  # the last: an opener of a session that is kept
    assert sum(isinstance(r, Conversation) for r in records) == 1


def test_a_plus_in_me_of_a_spec_stays_a_plus(tmp_path):
    from owngpt.data.chats.model import split_query

    assert split_query("chat.txt?me=+14155552671", ChatOptions())[1].me == ("+14155552671",)
    assert split_query("chat.txt?me=Al%20B&me=x", ChatOptions(me=("y",)))[1].me == ("Al B", "x", "y")
    spec = with_owner("chat.txt", ["+1 415 555 2671", "a&b"])
    assert split_query(spec, ChatOptions()) == ("chat.txt", ChatOptions(me=("+1 415 555 2671", "a&b")))


def test_prepare_without_chat_options_leaves_out_an_export_i_wrote_nothing_in(tmp_path):
    from chat_exports import WECHAT_ROWS
    from owngpt.data.prepare import PrepareConfig, prepare

    folder = tmp_path / "in"
    write(folder / "notes.txt", "plain doc\n")
    write(folder / "group.csv", wechat_csv([r for r in WECHAT_ROWS if r[1] == 0]))  # a group I only read
    report = prepare([str(folder)], tmp_path / "out", PrepareConfig(tokenizer_kind="char"), progress=False)
    assert report["total"]["documents"]["in"] == 1 and report["total"]["conversations"]["in"] == 0
    (export,) = report["chat_exports"]
    assert export["status"] == "left out" and "you wrote nothing here" in export["note"]
    assert any("group.csv: left out: you wrote nothing here" in s for s in report["skips"]["listed"])
    with pytest.raises(OwnGPTError, match="you wrote nothing here"):  # chat options given: the run is about chats
        read_sources([str(folder)], ReadOptions(chats=ChatOptions(me=("Alex",))))
