"""Tests for owngpt/data/sources.py: every reader, every bad input; dialogue formats (owngpt/data/dialogue.py)."""

from __future__ import annotations

import json

import pytest

from owngpt.data.records import Document, Skip
from owngpt.data.sources import (
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


# ----------------------------------------------------------------------------- bad specs


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
