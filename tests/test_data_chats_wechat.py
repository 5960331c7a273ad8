"""WeChat CSV as PyWxDump exports it (owngpt/data/chats/wechat.py): is_sender is me, quote replies keep the reply,
media / system / revoked rows are counted by type, group chats, older exports, bad files."""

from __future__ import annotations

import json

import pytest

from chat_exports import PHONE, WECHAT_ROWS, wechat_csv
from helpers import write
from owngpt.data.chats.export import detect_format, export_records, read_export
from owngpt.data.chats.model import ChatOptions
from owngpt.data.records import Conversation, Skip
from owngpt.errors import OwnGPTError


def split(path, **opts):
    records = list(export_records(path, fmt="wechat", opts=ChatOptions(**opts)))
    return ([r.messages for r in records if isinstance(r, Conversation)],
            sorted((int(r.loc.rsplit(":", 1)[1]), r.reason) for r in records if isinstance(r, Skip)))


def test_is_sender_is_me_and_every_row_is_accounted_for(tmp_path):
    path = write(tmp_path / "wxid_lilei_0_5000.csv", wechat_csv())
    assert detect_format(path) == "wechat"
    convs, skips = split(path)  # no --me needed
    assert convs == [
        [{"role": "user", "content": "晚上吃什么？"},
         {"role": "assistant", "content": "火锅！\n老地方见\n七点"},  # a sticker between them left out; merged
         {"role": "user", "content": "好的"},  # the quote reply's own text, not what it quotes
         {"role": "assistant", "content": f"到了打我电话 {PHONE}"}],
        [{"role": "user", "content": "A: 周末有空吗\nB: 我有"},  # a group (@chatroom): pseudonyms
         {"role": "assistant", "content": "我也有[微笑]"}],
    ]
    assert skips == [  # lines: the header is line 1, and one message spans lines 5-6
        (4, "media or other non-text message (WeChat 动画表情)"), (7, "media or other non-text message (WeChat 图片)"),
        (12, "system notice (WeChat 系统通知)"), (13, "revoked message"),
        (14, "media or other non-text message (WeChat 语音)"), (15, "session with no reply from me"),
        (19, "system notice (WeChat 拍一拍)"),
    ]
    parsed = read_export(path, "wechat", ChatOptions())
    assert sum(m.mine for m in parsed.messages) == 4 and len(parsed.items) == len(WECHAT_ROWS)


def test_an_export_where_i_wrote_nothing_says_so(tmp_path):
    rows = [r for r in WECHAT_ROWS if r[1] == 0]
    path = write(tmp_path / "wx.csv", wechat_csv(rows))
    with pytest.raises(OwnGPTError, match=r"wx\.csv: you wrote nothing here \(no message has is_sender=1\)"):
        read_export(path, "wechat", ChatOptions(me=("whoever",)))


def test_older_exports_with_a_content_column(tmp_path):
    text = ('id,MsgSvrID,type_name,is_sender,talker,room_name,content,CreateTime\n'
            '1,1,文本,0,wxid_a,wxid_a,"{""src"": """", ""msg"": ""hello there""}",1688205600\n'
            '2,2,文本,1,我,wxid_a,"{""src"": """", ""msg"": ""hi!""}",1688205660\n')
    path = write(tmp_path / "old.csv", text)
    assert detect_format(path) == "wechat"
    assert split(path)[0] == [[{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi!"}]]


def test_a_csv_forced_as_wechat_without_its_columns_names_them(tmp_path):
    path = write(tmp_path / "reviews.csv", "text,stars\ngreat,5\n")
    assert detect_format(path) is None
    with pytest.raises(OwnGPTError, match=r"reviews\.csv:1: not a PyWxDump WeChat CSV: no column 'type_name'.*"
                                          r"\(its columns: text, stars\)"):
        read_export(path, "wechat", ChatOptions())


def test_older_quote_replies_keep_the_reply_text(tmp_path):
    rows = [("文本", 0, "wxid_a", "wxid_a", "明天几点？", "2023-07-01 18:00:00"),
            ("带有引用的文本消息", 1, "我", "wxid_a", "八点\n\n[引用](2023-07-01 18:00:00)wxid_a:明天几点？",
             "2023-07-01 18:01:00"),
            ("文本", 0, "wxid_a", "wxid_a", "好", "2023-07-01 18:02:00"),
            ("类似文字消息而不一样的消息", 1, "我", "wxid_a", "那就说定了", "2023-07-01 18:03:00"),
            ("类似文字消息而不一样的消息", 0, "wxid_a", "wxid_a", "类似文字消息而不一样的消息", "2023-07-01 18:04:00")]
    convs, skips = split(write(tmp_path / "old.csv", wechat_csv(rows)))
    assert convs == [[{"role": "user", "content": "明天几点？"}, {"role": "assistant", "content": "八点"},
                      {"role": "user", "content": "好"}, {"role": "assistant", "content": "那就说定了"}]]
    assert skips == [(8, "media or other non-text message (WeChat 类似文字消息而不一样的消息)")]  # only its type name


def test_group_speakers_are_named_or_pseudonymous_never_wxids(tmp_path):
    rows = [("文本", 0, "wxid_hmm", "123@chatroom", "周末有空吗", "2023-07-03 10:00:00"),
            ("文本", 0, "wxid_wang", "123@chatroom", "我有", "2023-07-03 10:00:30"),
            ("文本", 0, "wxid_hmm", "123@chatroom", "那就周六", "2023-07-03 10:00:40"),
            ("文本", 1, "我", "123@chatroom", "我也有", "2023-07-03 10:01:00")]
    path = write(tmp_path / "export" / "123@chatroom_0_500.csv", wechat_csv(rows))
    convs, _ = split(path)
    assert convs[0][0]["content"] == "A: 周末有空吗\nB: 我有\nA: 那就周六"  # stable pseudonyms in order of appearance
    write(tmp_path / "export" / "users.json", json.dumps({  # PyWxDump writes it beside the CSV files
        "wxid_hmm": {"wxid": "wxid_hmm", "nickname": "韩梅梅", "remark": "", "account": "hmm"},
        "wxid_wang": {"wxid": "wxid_wang", "nickname": "王", "remark": "王老师", "account": ""}}, ensure_ascii=False))
    convs, _ = split(path)
    assert convs[0][0]["content"] == "韩梅梅: 周末有空吗\n王老师: 我有\n韩梅梅: 那就周六"  # the remark before the nickname
    assert "wxid" not in json.dumps(convs)


def test_a_csv_forced_as_wechat_shows_its_first_row_scrubbed(tmp_path):
    path = write(tmp_path / "contacts.csv", f"jane.doe@gmail.com,{PHONE},hello\n")  # no header: its first row is data
    with pytest.raises(OwnGPTError, match=r"not a PyWxDump WeChat CSV.*\(its columns: <EMAIL>, <PHONE>, hello\)") as e:
        read_export(path, "wechat", ChatOptions())
    assert "jane" not in str(e.value) and "555" not in str(e.value)


USERS = {"wxid_hmm": {"wxid": "wxid_hmm", "nickname": "韩梅梅", "remark": "", "account": "hmm"},
         "wxid_wang": {"wxid": "wxid_wang", "nickname": "王", "remark": "王老师", "account": ""}}


def test_users_json_in_a_folder_is_the_contact_list_left_out_without_names(tmp_path):
    from owngpt.data.sources import read_sources

    folder = tmp_path / "export"
    write(folder / "wx.csv", wechat_csv())
    write(folder / "users.json", json.dumps(USERS, ensure_ascii=False))
    write(folder / "other.json", json.dumps({"wxid_x": 1, "text": "a plain document"}))  # not a contact list
    records = list(read_sources([str(folder)]))
    skips = [r for r in records if isinstance(r, Skip) and r.loc.endswith("users.json")]
    assert [s.reason for s in skips] == ["WeChat contact list (users.json), used for speaker names"]
    assert not any("wxid" in r.reason or "韩梅梅" in r.reason for r in records if isinstance(r, Skip))
    assert sum(isinstance(r, Conversation) for r in records) == 2
    assert any(not isinstance(r, (Skip, Conversation)) and r.text == "a plain document" for r in records)


def test_users_json_beside_a_named_csv_is_in_the_prepare_fingerprint(tmp_path):
    from owngpt.data.fingerprint import input_fingerprint_data

    csv = write(tmp_path / "export" / "wx.csv", wechat_csv())
    before = input_fingerprint_data([str(csv)])
    users = write(tmp_path / "export" / "users.json", json.dumps(USERS, ensure_ascii=False))
    after = input_fingerprint_data([str(csv)])
    assert before != after and any(e[0] == str(users) for e in after[0][1:])
    assert input_fingerprint_data([f"wechat:{csv}"])[0][1:] == after[0][1:]  # forced, too
