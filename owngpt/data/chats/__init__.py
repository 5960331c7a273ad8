"""Chat exports (WeChat, QQ, Telegram, WhatsApp) read into conversations in which I am the assistant.

    model.py     Message / Dropped / Parsed, ChatOptions (--me, --session-gap, --groups, the block list), who is me
    wechat.py qq.py telegram.py whatsapp.py   one reader per export format (each says what it keeps and drops)
    sessions.py  sessions by silence, turns by speaker, my turns as the assistant's; Conversation / Skip records
    export.py    the formats, recognised from a file's start or forced by a prefix (wechat:FILE ...); reading one
    style.py     text statistics of messages: length, emoji, punctuation, frequent phrases
    dryrun.py    what would be trained on (counts, scrubbed examples, my share), without training

owngpt/data/sources.py reads a chat export wherever a file is read (`owngpt prepare`, `sft --data`, `evaluate
--data`), so cleaning, scrubbing, dedup, splits and the report apply to it unchanged.
"""
