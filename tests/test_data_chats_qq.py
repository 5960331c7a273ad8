"""QQ text exports (owngpt/data/chats/qq.py): sections per chat, friend and group chats, placeholders, system and
revoked messages, GBK files from Windows, and who is me."""

from __future__ import annotations

import pytest

from chat_exports import QQ_EXPORT
from helpers import write
from owngpt.data.chats.export import detect_format, export_records, read_export
from owngpt.data.chats.model import ChatOptions
from owngpt.data.records import Conversation, Skip
from owngpt.errors import OwnGPTError

EXPECTED = [
    [{"role": "user", "content": "在吗？"},
     {"role": "assistant", "content": "在的，刚下班\n今天好累"},
     {"role": "user", "content": "看这个"},  # the [表情] placeholder cut from the text
     {"role": "assistant", "content": "哈哈哈 笑死"}],
    [{"role": "user", "content": "王老师: 这周读什么书？\n韩梅梅: 《活着》吧"},  # a group: names kept
     {"role": "assistant", "content": "同意\n我已经买了"},
     {"role": "user", "content": "王老师: 好，就这本"}],  # a last user turn is trimmed when training
]


def split(records):
    return ([r.messages for r in records if isinstance(r, Conversation)],
            [(r.loc, r.reason) for r in records if isinstance(r, Skip)])


@pytest.mark.parametrize("me", ["987654321", "小明"])  # the QQ number or the nickname
def test_friend_and_group_chats_by_number_or_nickname(tmp_path, me):
    path = write(tmp_path / "全部消息记录.txt", QQ_EXPORT)
    assert detect_format(path) == "qq"
    convs, skips = split(list(export_records(path, fmt="qq", opts=ChatOptions(me=(me,)))))
    assert convs == EXPECTED
    assert skips == [(f"{path}:16", "media (图片)"), (f"{path}:25", "revoked message")]
    parsed = read_export(path, "qq", ChatOptions(me=(me,)))
    assert {m.chat for m in parsed.messages} == {"李雷", "读书会"}
    assert [(m.speaker, m.speaker_id) for m in parsed.messages if m.chat == "读书会"][:2] == [
        ("王老师", "111111"), ("韩梅梅", "meimei@example.com")]
    assert [m.group for m in parsed.messages] == [False] * 4 + [True] * 4


def test_a_gbk_export_from_windows_reads_the_same_and_says_it_was_converted(tmp_path):
    path = write(tmp_path / "qq.txt", QQ_EXPORT.lstrip("\ufeff").replace("\n", "\r\n").encode("gbk"))
    assert detect_format(path) == "qq"
    records = list(export_records(path, fmt="qq", opts=ChatOptions(me=("987654321",))))
    convs, skips = split(records)
    assert convs == EXPECTED
    assert all(r.loc.endswith(" [gb18030]") for r in records)
    assert skips[0] == (f"{path}:16 [gb18030]", "media (图片)")


def test_me_naming_nobody_lists_the_speakers_with_counts_and_scrubs_them(tmp_path):
    path = write(tmp_path / "qq.txt", QQ_EXPORT)
    with pytest.raises(OwnGPTError) as e:
        read_export(path, "qq", ChatOptions(me=("Alice",)))
    message = str(e.value)
    assert message.startswith(f"{path}: --me 'Alice' names nobody here; speakers found: ")
    assert "小明 [987654321] (3)" in message and "李雷 [123456789] (2)" in message
    assert "meimei@example.com" not in message and "韩梅梅 [<EMAIL>] (1)" in message
    with pytest.raises(OwnGPTError, match="which speaker are you"):
        read_export(path, "qq", ChatOptions())


def test_a_message_line_that_looks_like_a_header_stays_text(tmp_path):
    text = ("2023-01-01 10:00:00 甲(11111)\n会议改到\n2023-01-02 10:00:00 开\n\n"
            "2023-01-01 10:01:00 乙(22222)\n好的\n")
    path = write(tmp_path / "qq.txt", text)
    convs, _ = split(list(export_records(path, fmt="qq", opts=ChatOptions(me=("22222",)))))
    assert convs == [[{"role": "user", "content": "会议改到\n2023-01-02 10:00:00 开"},
                      {"role": "assistant", "content": "好的"}]]
