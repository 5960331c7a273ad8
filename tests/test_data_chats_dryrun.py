"""The dry run (owngpt/data/chats/dryrun.py and `--dry-run`): what would be trained on, counted exactly, with
scrubbed examples and speakers, and nothing written."""

from __future__ import annotations

import json

import pytest

from chat_exports import EMAIL, PHONE, WHATSAPP_ANDROID, WHATSAPP_IOS, wechat_csv
from helpers import write
from owngpt.data.chats.dryrun import dry_run, language_of
from owngpt.data.chats.model import ChatOptions
from owngpt.data.sources import ReadOptions
from owngpt.errors import OwnGPTError


def test_the_report_counts_messages_sessions_and_what_was_left_out(tmp_path):
    android = write(tmp_path / "a.txt", WHATSAPP_ANDROID)
    wechat = write(tmp_path / "w.csv", wechat_csv())
    report = dry_run([str(android), str(wechat)], ReadOptions(chats=ChatOptions(me=("Alex",))), examples=2)
    assert [(f["format"], f["messages"], f["mine"], f["chats"], f["group_chats"]) for f in report["files"]] == [
        ("WhatsApp", 14, 7, 1, 0), ("WeChat", 9, 4, 2, 1)]
    assert report["files"][0]["speakers"] == "Sam (7), Alex (7)"
    assert report["files"][1]["speakers"] == "我 (4), wxid_lilei (3), A [wxid_hmm] (1), B [wxid_wang] (1)"
    assert (report["messages"], report["mine"]) == (23, 11) and report["share_mine"] == pytest.approx(11 / 23)
    assert report["conversations"] == 4 and report["turns"] == {"user": 7, "assistant": 7}
    assert report["dropped"] == {
        "media or other non-text message (WeChat 动画表情)": 1, "media or other non-text message (WeChat 图片)": 1,
        "system notice (WeChat 系统通知)": 1, "revoked message": 1, "media or other non-text message (WeChat 语音)": 1,
        "system notice (WeChat 拍一拍)": 1, "system line": 1, "media (left out of the export)": 1, "deleted message": 1,
    }
    assert report["dropped_total"] == 9
    assert report["sessions_left_out"] == {"my messages that open a session (nothing to reply to)": 1,
                                           "session with no reply from me": 3}
    assert report["trained_chars"] == 132 and report["context_chars"] == 117  # group speakers: "A: ", "B: "
    assert report["scrubbed"] == {"pii_phone": 2}  # my number, in both exports
    assert report["languages"] == {"en": 7, "zh": 4} and language_of(report) == "en"
    assert len(report["examples"]) == 2 and report["examples"][1][1]["content"] == "it's <PHONE>"


def test_nothing_in_the_report_holds_personal_data(tmp_path):
    ios = write(tmp_path / "i.txt", WHATSAPP_IOS)  # a speaker known only by a phone number
    text = json.dumps(dry_run([str(ios)], ReadOptions(chats=ChatOptions(me=("小明",)))), ensure_ascii=False)
    assert PHONE not in text and "555-0134" not in text and EMAIL not in text
    assert "<PHONE> (1)" in text and "<PHONE>: 算我一个" in text


def test_a_file_that_is_no_chat_export_is_a_document_as_prepare_reads_it(tmp_path):
    notes = write(tmp_path / "notes.txt", "just notes\n")
    report = dry_run([str(notes)], ReadOptions(chats=ChatOptions(me=("A",))))
    assert report["documents"] == 1 and report["document_chars"] == 11 and report["files"] == []


def test_prepare_dry_run_prints_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    _register()
    path = write(tmp_path / "a.txt", WHATSAPP_ANDROID)
    out = tmp_path / "data"
    result = CliRunner().invoke(app, ["prepare", str(path), "--out", str(out), "--me", "Alex", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "7 of 14 text messages are yours (50%)" in result.output
    assert "trained on: 2 sessions, 4 turns of yours" in result.output
    assert "personal data replaced: phone 1" in result.output and PHONE not in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["prepare", str(path), "--out", str(out), "--me", "Nobody", "--dry-run"])
    assert result.exit_code == 1 and "names nobody here; speakers found: Sam (7), Alex (7)" in str(result.exception)


def test_prepare_dry_run_reports_on_what_prepare_would_read_without_out(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    _register()
    pytest.importorskip("chitchat_dataset")
    chat = write(tmp_path / "chat.txt", WHATSAPP_ANDROID)
    readme = write(tmp_path / "docs" / "readme.txt", "plain doc\n")
    result = CliRunner().invoke(app, ["prepare", "builtin:chitchat", str(chat), str(readme.parent), "--me", "Alex",
                                      "--dry-run"])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "7 of 14 text messages are yours (50%)" in result.output
    assert "documents: 1 (" in result.output  # the readme; chitchat's dialogues are conversations
    report = dry_run(["builtin:chitchat", str(chat), str(readme.parent)], ReadOptions(chats=ChatOptions(me=("Alex",))),
                     examples=0)
    assert report["documents"] == 1 and report["conversations"] > 1000  # chitchat's dialogues + my 2 sessions
    assert report["chat_conversations"] == 2
    result = CliRunner().invoke(app, ["prepare", str(readme.parent), "--dry-run"])  # no chats at all: still a report
    assert result.exit_code == 0 and "documents: 1 (" in result.output, result.output + str(result.exception)
    result = CliRunner().invoke(app, ["prepare", str(readme.parent)])
    assert result.exit_code != 0 and "--out" in result.output + str(result.exception)


def test_the_dry_run_takes_prepares_reading_options(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    notes = write(tmp_path / "notes.csv", "title,body\na,first note\nb,second note\n")
    report = dry_run([str(notes)], ReadOptions(text_column="body"))
    assert report["documents"] == 2 and report["document_chars"] == len("first note") + len("second note")
    blocks = write(tmp_path / "b" / "blocks.txt", "one\n\ntwo\n\nthree\n")
    assert dry_run([str(blocks)], ReadOptions(split_blocks=True))["documents"] == 3
    _register()
    result = CliRunner().invoke(app, ["prepare", str(notes), "--text-column", "body", "--dry-run"])
    assert result.exit_code == 0 and "documents: 2 (" in result.output, result.output + str(result.exception)
    jsonl = write(tmp_path / "j.jsonl", '{"body": "a text"}\n')
    result = CliRunner().invoke(app, ["prepare", str(jsonl), "--text-field", "body", "--dry-run"])
    assert result.exit_code == 0 and "documents: 1 (" in result.output, result.output + str(result.exception)
    result = CliRunner().invoke(app, ["prepare", str(blocks), "--split-blocks", "--dry-run"])
    assert result.exit_code == 0 and "documents: 3 (" in result.output, result.output + str(result.exception)
