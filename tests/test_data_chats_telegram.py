"""Telegram Desktop's result.json (owngpt/data/chats/telegram.py): one chat or the full export, text entities,
service messages, media, captions, forwards, the owner from personal_information, and a file cut short."""

from __future__ import annotations

import json

import pytest

from chat_exports import EMAIL, telegram_chat, telegram_full, write_telegram
from helpers import write
from owngpt.data.chats.export import detect_format, export_records, read_export
from owngpt.data.chats.model import ChatOptions
from owngpt.data.records import Conversation, Skip
from owngpt.errors import OwnGPTError

PERSONAL = [
    [{"role": "user", "content": "did you see the **game** last night?"},
     {"role": "assistant", "content": "no, missed it 😩 who won?"},  # a list of text entities, joined
     {"role": "user", "content": "we did!"},  # a photo's caption is text
     {"role": "assistant", "content": f"nice!!\nmail me the photos: {EMAIL}"}],  # (scrubbed by prepare)
    [{"role": "user", "content": "早上好"}, {"role": "assistant", "content": "早！"}],  # next day: a new session
]
SKIPPED = ["system notice (Telegram service message: phone_call)", "media (photo)", "media (sticker)",
           "forwarded message (someone else wrote it)"]


def split(path, opts: ChatOptions):
    records = list(export_records(path, fmt="telegram", opts=opts))
    return ([r.messages for r in records if isinstance(r, Conversation)],
            [(r.loc, r.reason) for r in records if isinstance(r, Skip)])


def test_one_chat_needs_me_and_locates_every_skip_by_line(tmp_path):
    path = write_telegram(tmp_path / "result.json", telegram_chat())
    assert detect_format(path) == "telegram"
    convs, skips = split(path, ChatOptions(me=("Alex",)))
    assert convs == PERSONAL
    assert [r for _, r in skips] == SKIPPED
    lines = path.read_text(encoding="utf-8").splitlines()
    for loc, _ in skips:  # each location is the line of that message's "type"
        assert lines[int(loc.rsplit(":", 1)[1]) - 1].strip().startswith('"type": ')
    assert split(path, ChatOptions(me=("user111",)))[0] == PERSONAL  # the id works too, with or without "user"
    assert split(path, ChatOptions(me=("111",)))[0] == PERSONAL
    with pytest.raises(OwnGPTError, match=r"which speaker are you\? .*Maria \[user222\] \(3\), Alex \[user111\] \(3\)"):
        read_export(path, "telegram", ChatOptions())


def test_the_full_export_knows_its_owner_and_names_group_speakers(tmp_path):
    path = write_telegram(tmp_path / "result.json", telegram_full())
    convs, skips = split(path, ChatOptions())  # no --me: personal_information.user_id is me
    assert convs == PERSONAL + [[{"role": "user", "content": "Lee: who's in for saturday?\nMaria: me"},
                                 {"role": "assistant", "content": "count me in"}]]
    assert [r for _, r in skips] == SKIPPED + ["system notice (Telegram service message: create_group)"]


def test_a_file_cut_short_is_an_error_with_its_position(tmp_path):
    whole = json.dumps(telegram_chat(), ensure_ascii=False, indent=1)
    path = write(tmp_path / "result.json", whole[: len(whole) // 2])
    assert detect_format(path) == "telegram"
    with pytest.raises(OwnGPTError, match=r"result\.json:\d+:\d+: not valid JSON \(.*, character \d+ of \d+\); the "
                                          r"file looks cut short: export it again"):
        read_export(path, "telegram", ChatOptions(me=("Alex",)))


def test_other_json_is_not_telegram(tmp_path):
    messages = write(tmp_path / "chats.json", json.dumps([{"messages": [{"role": "user", "content": "hi"}]}]))
    assert detect_format(messages) is None
    with pytest.raises(OwnGPTError, match="not a Telegram export: expected 'messages'"):
        read_export(write(tmp_path / "x.json", '{"a": 1}'), "telegram", ChatOptions(me=("A",)))
