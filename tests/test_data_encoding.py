"""Decoding (owngpt/data/encoding.py) through the readers: binary files skipped, GB18030/UTF-16 converted and marked,
invalid UTF-8 reported with its byte offset, never guessed."""

from __future__ import annotations

import json

from helpers import write
from owngpt.data.encoding import converted_from, detect_encoding
from owngpt.data.records import Document, Skip
from owngpt.data.sources import read_csv, read_jsonl, read_text

ZH = "今天天气很好，我们去公园散步吧。人工智能正在改变世界。"


def kinds(records) -> list[str]:
    return [type(r).__name__ for r in records]


def test_binary_files_are_skipped(tmp_path):
    png = write(tmp_path / "img.txt", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    noise = write(tmp_path / "noise.jsonl", bytes((i * 37 + 11) % 128 + 128 for i in range(4000)))
    assert [(type(s).__name__, s.reason) for s in read_text(png)] == [("Skip", "binary file")]
    assert [s.reason for s in read_jsonl(noise)] == ["binary file"]
    assert detect_encoding(png) == detect_encoding(noise) == "binary"


def test_gb18030_file_is_converted_and_marked(tmp_path):
    p = write(tmp_path / "old.txt", ("标题\n" + ZH + "\n").encode("gb18030"))
    assert detect_encoding(p) == "gb18030"
    (doc,) = read_text(p)
    assert isinstance(doc, Document) and doc.text == "标题\n" + ZH + "\n"
    assert doc.loc == f"{p} [gb18030]" and converted_from(doc.loc) == "gb18030"
    j = write(tmp_path / "old.jsonl", json.dumps({"text": ZH}, ensure_ascii=False).encode("gbk"))
    (d,) = read_jsonl(j)
    assert d.text == ZH and d.loc == f"{j}:1 [gb18030]"
    c = write(tmp_path / "old.csv", f"text\n{ZH}\n".encode("gb18030"))
    assert [x.text for x in read_csv(c)] == [ZH]


def test_utf8_bom_and_utf16_are_read(tmp_path):
    a = write(tmp_path / "bom.csv", "\ufefftext\nhello\n".encode())
    assert [x.text for x in read_csv(a)] == ["hello"]
    b = write(tmp_path / "u16.txt", ZH.encode("utf-16"))
    (doc,) = read_text(b)
    assert doc.text == ZH and converted_from(doc.loc) == "utf-16"


def test_invalid_utf8_reports_byte_offset(tmp_path):
    # Latin-1 "café" is neither UTF-8 nor plausible GB18030: reported, never guessed.
    p = write(tmp_path / "latin.txt", "The café is open.\n".encode("latin-1"))
    (skip,) = read_text(p)
    assert isinstance(skip, Skip) and skip.reason.startswith("invalid UTF-8 at byte 7")
    j = write(tmp_path / "mixed.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n{"text": "fine"}\n')
    r = list(read_jsonl(j))
    assert kinds(r) == ["Document", "Skip", "Document"]
    assert r[1].reason == f"{j}:2: invalid UTF-8 at byte 28"
    assert r[1].loc == f"{j}:2"
