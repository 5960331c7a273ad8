"""The prepared-folder reader (owngpt/data/corpus.py): what counts as prepared, unfinished folders, split files."""

from __future__ import annotations

import json

import pytest

from owngpt.data.conversations import load_conversations
from owngpt.data.corpus import corpus_texts, is_prepared, is_unfinished, read_split, split_texts
from owngpt.errors import OwnGPTError


def conv(*contents: str) -> dict:
    roles = ("user", "assistant")
    return {"messages": [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]}


def prepared(tmp_path, name: str = "prep", *, manifest: bool = True, report: bool = True):
    """A folder shaped like `owngpt prepare`'s output (manifest.json is what a finished run writes last)."""
    d = tmp_path / name
    (d / "docs").mkdir(parents=True)
    (d / "conversations").mkdir()
    (d / "docs" / "train.jsonl").write_text(json.dumps({"id": "1", "source": "s", "text": "文档"}) + "\n")
    (d / "conversations" / "train.jsonl").write_text(json.dumps({"id": "2", "source": "s", **conv("q", "a")}) + "\n")
    if report:
        (d / "report.json").write_text("{}")
    if manifest:
        (d / "manifest.json").write_text("{}")
    return d


def test_corpus_texts_prepared_and_raw(tmp_path):
    d = prepared(tmp_path)
    assert list(corpus_texts(d)) == ["文档", "q", "a"]
    raw = tmp_path / "raw.txt"
    raw.write_text("plain text file", encoding="utf-8")
    assert list(corpus_texts([str(raw)])) == ["plain text file"]
    with pytest.raises(OwnGPTError):
        corpus_texts([str(tmp_path / "missing.txt")])


def test_every_caller_classifies_a_folder_the_same_way(tmp_path):
    """The old tokenizer test called a folder with report.json but no manifest.json prepared, the old conversations
    test called any folder with a conversations/ folder prepared. Now manifest.json decides, for every reader."""
    bare = tmp_path / "bare" / "conversations"  # no manifest, no report: not prepare's output, just files
    bare.mkdir(parents=True)
    (bare / "train.jsonl").write_text(json.dumps(conv("hi", "hello")) + "\n" + json.dumps({"text": "doc"}) + "\n")
    assert not is_prepared(bare.parent) and not is_unfinished(bare.parent)
    cs = load_conversations([str(bare.parent)])  # read as raw files: the document line is not a problem
    assert len(cs.conversations) == 1 and cs.documents_ignored == 1 and not cs.problems
    assert list(corpus_texts(bare.parent)) == ["hi", "hello", "doc"]

    unfinished = prepared(tmp_path, "unfinished", manifest=False)  # what a failed or interrupted run leaves
    assert not is_prepared(unfinished) and is_unfinished(unfinished)
    for read in (lambda: corpus_texts(unfinished), lambda: load_conversations([str(unfinished)])):
        with pytest.raises(OwnGPTError, match="unfinished `owngpt prepare` folder.*no manifest.json"):
            read()

    done = prepared(tmp_path, "done")
    assert is_prepared(done) and not is_unfinished(done)
    assert list(corpus_texts(done)) == ["文档", "q", "a"]
    assert load_conversations([str(done)]).conversations == [conv("q", "a")["messages"]]
    assert load_conversations([str(done)], split="val").conversations == []  # a split is read, not the whole folder


def test_read_split_reports_each_bad_line(tmp_path):
    d = prepared(tmp_path)
    f = d / "conversations" / "val.jsonl"
    f.write_text("\n".join([json.dumps(conv("q", "a")), "{not json", "", json.dumps({"text": "x"}), "[1]"]) + "\n")
    lines = list(read_split(d, "conversations", "val"))
    assert [(line.loc, line.problem) for line in lines] == [
        (f"{f}:1", ""), (f"{f}:2", "invalid JSON: Expecting property name enclosed in double quotes"),
        (f"{f}:4", "missing field 'messages'"), (f"{f}:5", "missing field 'messages'")]
    assert lines[0].record == conv("q", "a")
    assert list(read_split(d, "docs", "test")) == []  # no file: nothing
    with pytest.raises(OwnGPTError, match=r"val.jsonl:2: expected \{'text': ...\} or \{'messages': \[...\]\}"):
        list(split_texts(d, "val"))
    with pytest.raises(OwnGPTError, match="neither docs/test.jsonl nor conversations/test.jsonl"):
        list(split_texts(d, "test"))
    assert list(split_texts(d, "train", kinds=("docs",))) == ["文档"]
