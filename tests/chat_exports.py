"""Chat exports written the way each app writes them, small enough to check every message by hand.

Each holds English and Chinese text, media, system lines, multi-line messages and (except the first WhatsApp one)
a group chat. 'Alex' / '小明' is always me. PHONE and EMAIL appear in my messages and in a speaker's name, to check
that no output holds them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

PHONE = "+1 415-555-0134"
EMAIL = "alex.w@example.com"

# Android, US dates (month first), 12-hour clock with the narrow no-break space newer phones write.
WHATSAPP_ANDROID = f"""\
1/14/24, 9:02\u202fPM - Messages and calls are end-to-end encrypted. No one outside of this chat can read them.
1/14/24, 9:02\u202fPM - Sam: hey! are we still on for friday?
1/14/24, 9:03\u202fPM - Alex: yes!! 7pm at the usual place
1/14/24, 9:03\u202fPM - Alex: bring the board game
and the snacks 🍿
1/14/24, 9:05\u202fPM - Sam: <Media omitted>
1/14/24, 9:05\u202fPM - Sam: is this the one?
1/14/24, 9:06\u202fPM - Alex: haha yes that one
1/14/24, 9:30\u202fPM - Sam: This message was deleted
1/15/24, 8:00\u202fAM - Alex: morning! you up?
1/15/24, 8:20\u202fAM - Sam: yes, what's your number again?
1/15/24, 8:21\u202fAM - Alex: it's {PHONE} <This message was edited>
1/15/24, 8:22\u202fAM - Sam: IMG-20240115-WA0003.jpg (file attached)
look at this view
1/15/24, 8:40\u202fAM - Alex: wow 😍
1/15/24, 6:00\u202fPM - Sam: missed you at lunch
1/15/24, 6:01\u202fPM - Sam: you ok?
1/16/24, 10:00\u202fAM - Alex: sorry, busy day
1/16/24, 10:05\u202fAM - Sam: no worries
"""

# iOS, day first with seconds, 24-hour clock; a group of four (one saved only as a phone number, wrapped in
# direction marks as WhatsApp writes it); media and system lines marked with U+200E.
WHATSAPP_IOS = f"""\
[03/02/2024, 19:00:01] 周末小组: \u200eMessages and calls are end-to-end encrypted.
[03/02/2024, 19:00:05] 小红: 明天去爬山吗？
[03/02/2024, 19:00:20] \u202a{PHONE}\u202c: 算我一个
[03/02/2024, 19:00:30] 小刚: 我去！
[03/02/2024, 19:01:10] 小明: 好啊，几点集合？
[03/02/2024, 19:01:15] 小明: 我带水
还有面包
[03/02/2024, 19:02:00] 小红: \u200eimage omitted
[03/02/2024, 19:02:20] 小红: 八点，老地方
[03/02/2024, 19:02:40] 小明: 收到 👌
\u200e[03/02/2024, 19:03:00] 小刚: \u200esticker omitted
[13/02/2024, 08:00:00] 小刚: 下次什么时候？
[13/02/2024, 08:10:00] 小红: 周六吧
[13/02/2024, 08:12:00] 小明: 周六可以
"""

QQ_EXPORT = """\
\ufeff消息记录（此消息记录为文本格式，不支持重新导入）

================================================================
消息分组:我的好友
================================================================
消息对象:李雷
================================================================

2023-05-01 20:15:02 李雷(123456789)
在吗？

2023-05-01 20:15:40 小明(987654321)
在的，刚下班
今天好累

2023-05-01 20:16:00 李雷(123456789)
[图片]

2023-05-01 20:16:30 李雷(123456789)
看这个[表情]

2023-05-01 20:17:00 小明(987654321)
哈哈哈 笑死

2023-05-01 20:18:00 系统消息(10000)
李雷撤回了一条消息

================================================================
消息分组:我的群聊
================================================================
消息对象:读书会
================================================================

2023-06-10 09:00:00 【群主】王老师(111111)
这周读什么书？

2023-06-10 09:05:00 韩梅梅<meimei@example.com>
《活着》吧

2023-06-10 09:06:00 小明(987654321)
同意
我已经买了

2023-06-10 09:07:00 王老师(111111)
好，就这本
"""


IDS = {"Alex": "user111", "Maria": "user222", "Lee": "user333"}


def tg(i: int, when: str, who: str, text: object = "", kind: str = "message", **extra) -> dict:
    """One message as Telegram Desktop writes it (a service message names its `actor` instead of `from`)."""
    unix = str(int(datetime.fromisoformat(when).replace(tzinfo=timezone.utc).timestamp()))
    sender = {"from": who, "from_id": IDS[who]} if kind == "message" else {"actor": who, "actor_id": IDS[who]}
    return {"id": i, "type": kind, "date": when, "date_unixtime": unix, **sender, **extra, "text": text}


def telegram_chat() -> dict:
    """One personal chat as Telegram Desktop exports it (no owner: --me needed)."""
    return {"name": "Maria", "type": "personal_chat", "id": 4321, "messages": [
        tg(1, "2023-03-01T10:00:00", "Alex", kind="service", action="phone_call", text_entities=[]),
        tg(2, "2023-03-01T10:01:00", "Maria", "did you see the **game** last night?"),
        tg(3, "2023-03-01T10:02:00", "Alex", ["no, ", {"type": "bold", "text": "missed it"}, " 😩 who won?"]),
        tg(4, "2023-03-01T10:03:00", "Maria", photo="photos/photo_1.jpg", width=800, height=600),
        tg(5, "2023-03-01T10:03:30", "Maria", "we did!", photo="photos/photo_2.jpg"),
        tg(6, "2023-03-01T10:04:00", "Alex", file="stickers/sticker.webp", media_type="sticker", sticker_emoji="🎉"),
        tg(7, "2023-03-01T10:05:00", "Alex", "Final score 3-1", forwarded_from="Sports News"),
        tg(8, "2023-03-01T10:06:00", "Alex", f"nice!!\nmail me the photos: {EMAIL}"),
        tg(9, "2023-03-02T09:00:00", "Maria", "早上好"),
        tg(10, "2023-03-02T09:01:00", "Alex", "早！"),
    ]}


def telegram_full() -> dict:
    """The full export: my account in personal_information, a personal chat and a group."""
    group = {"name": "Climbing", "type": "private_supergroup", "id": 99, "messages": [
        tg(1, "2023-04-01T18:00:00", "Lee", kind="service", action="create_group", title="Climbing"),
        tg(2, "2023-04-01T18:01:00", "Lee", "who's in for saturday?"),
        tg(3, "2023-04-01T18:02:00", "Maria", "me"),
        tg(4, "2023-04-01T18:03:00", "Alex", "count me in"),
    ]}
    return {"about": "Here is the data you requested.",
            "personal_information": {"user_id": 111, "first_name": "Alex", "last_name": "W",
                                     "phone_number": PHONE, "bio": ""},
            "chats": {"about": "This page lists all chats from this export.", "list": [telegram_chat(), group]}}


def write_telegram(path: Path, data: dict) -> Path:
    """As Telegram Desktop writes it: indented one space per level, one key per line."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


WECHAT_HEADER = "id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n"
WECHAT_ROWS = [
    # (type_name, is_sender, talker, room_name, msg, CreateTime)
    ("文本", 0, "wxid_lilei", "wxid_lilei", "晚上吃什么？", "2023-07-01 18:00:00"),
    ("文本", 1, "我", "wxid_lilei", "火锅！", "2023-07-01 18:01:00"),
    ("动画表情", 1, "我", "wxid_lilei", "表情", "2023-07-01 18:01:10"),
    ("文本", 1, "我", "wxid_lilei", "老地方见\n七点", "2023-07-01 18:01:30"),
    ("图片", 0, "wxid_lilei", "wxid_lilei", "图片", "2023-07-01 18:02:00"),
    ("引用回复", 0, "wxid_lilei", "wxid_lilei", "好的\n\n[引用](2023-07-01 18:01:30)我:老地方见", "2023-07-01 18:03:00"),
    ("文本", 1, "我", "wxid_lilei", f"到了打我电话 {PHONE}", "2023-07-01 18:04:00"),
    ("系统通知", 0, "wxid_lilei", "wxid_lilei", "你已添加了李雷，现在可以开始聊天了。", "2023-07-01 18:05:00"),
    ("消息撤回1", 0, "wxid_lilei", "wxid_lilei", "\"李雷\" 撤回了一条消息", "2023-07-01 18:06:00"),
    ("语音", 0, "wxid_lilei", "wxid_lilei", "语音时长：3.00秒", "2023-07-01 18:07:00"),
    ("文本", 0, "wxid_lilei", "wxid_lilei", "see you", "2023-07-02 12:00:00"),
    ("文本", 0, "wxid_hmm", "12345@chatroom", "周末有空吗", "2023-07-03 10:00:00"),
    ("文本", 0, "wxid_wang", "12345@chatroom", "我有", "2023-07-03 10:00:30"),
    ("文本", 1, "我", "12345@chatroom", "我也有[微笑]", "2023-07-03 10:01:00"),
    ("拍一拍", 0, "wxid_wang", "12345@chatroom", "\"王\" 拍了拍我", "2023-07-03 10:02:00"),
]


def wechat_csv(rows=WECHAT_ROWS) -> str:
    """PyWxDump's CSV of these rows (the csv module's quoting, as PyWxDump writes it)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    for i, (kind, sender, talker, room, msg, when) in enumerate(rows, 1):
        w.writerow([i, 8000 + i, kind, sender, talker, room, msg, "", when])
    return WECHAT_HEADER + buf.getvalue()
