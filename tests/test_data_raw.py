"""Tests for owngpt/data/raw.py: every path that reads raw text outside `prepare` cleans and scrubs it the same way
(`tokenizer train FILES`, `sft`/`evaluate` on a raw dialogue file), and says what it changed."""

from __future__ import annotations

import json

import pytest

from owngpt.cli import main
from owngpt.data.clean import CleanConfig, Cleaner
from owngpt.data.conversations import load_conversations
from owngpt.data.corpus import corpus_texts
from owngpt.tokenizer import Tokenizer
from helpers import write

PII = ("alice.smith@example.com", "13812345678", "192.168.77.123")
LINE = "contact alice.smith@example.com or call 13812345678 from 192.168.77.123 about the weather today\n"


def test_corpus_texts_of_raw_sources_are_scrubbed(tmp_path):
    src = write(tmp_path / "raw.txt", "".join(f"{i}: {LINE}" for i in range(3)))
    cleaner = Cleaner(CleanConfig())
    texts = list(corpus_texts([str(src)], cleaner=cleaner))
    assert texts and not any(v in t for t in texts for v in PII)
    assert "<EMAIL>" in texts[0] and "<PHONE>" in texts[0] and "<IP>" in texts[0]
    assert cleaner.report()["pii_email"]["changed"] == 1


def test_tokenizer_train_on_raw_files_learns_no_personal_data(tmp_path, capsys):
    """`owngpt tokenizer train RAW` used to learn vocabulary entries such as 'Ġ13812345678' and 'Ġalice'."""
    for i in range(40):
        write(tmp_path / "in" / f"{i}.txt", LINE + f"note {i} on the garden and its flowers\n")
    main(["tokenizer", "train", str(tmp_path / "in"), "--out", str(tmp_path / "tok"), "--vocab-size", "400"])
    out = capsys.readouterr().out
    assert "cleaned as prepare does:" in out and "pii_email changed 40" in out
    tok = Tokenizer.load(tmp_path / "tok")
    pieces = [tok.token_bytes(i).decode("utf-8", "replace") for i in range(tok.vocab_size)]
    assert not any(v in p for p in pieces for v in ("alice", "smith", "1381234", "192.168", "example.com"))
    assert tok.encode(LINE) != []  # still encodes the raw text (as bytes and smaller pieces)


def test_sft_and_evaluate_read_raw_dialogues_scrubbed(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"my mail is {PII[0]}, {i}"},
                          {"role": "assistant", "content": f"noted: I will call {PII[1]}"}]} for i in range(3)]
    src = write(tmp_path / "chats.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    got = load_conversations([str(src)])
    blob = json.dumps(got.conversations)
    assert len(got.conversations) == 3 and not any(v in blob for v in PII)
    assert "<EMAIL>" in blob and "<PHONE>" in blob
    summary = got.summary()
    assert summary["cleaning"]["pii_email"]["changed"] == 3 and summary["cleaning"]["pii_phone"]["changed"] == 3


def test_a_reason_that_quotes_personal_data_is_scrubbed_in_the_summary(tmp_path):
    src = write(tmp_path / "bad.jsonl", json.dumps({"messages": [{"role": PII[0], "content": "hi"}]}) + "\n")
    summary = load_conversations([str(src)]).summary()
    assert summary["rejected"] == 1 and PII[0] not in json.dumps(summary)


@pytest.mark.parametrize("spec", ["prepared", "raw"])
def test_prepared_folders_are_read_as_they_are(tmp_path, spec):
    """A prepared folder was cleaned by prepare already: corpus_texts reads it without a second pass."""
    from owngpt.data.prepare import PrepareConfig, prepare

    for i in range(20):
        write(tmp_path / "in" / f"{i}.txt", f"note {i}: {LINE}")
    if spec == "prepared":
        prepare([str(tmp_path / "in")], tmp_path / "data", PrepareConfig(vocab_size=300, near_dup_threshold=0),
                progress=False)
        texts = list(corpus_texts(str(tmp_path / "data")))
    else:
        texts = list(corpus_texts(str(tmp_path / "in")))
    assert texts and not any(v in t for t in texts for v in PII)


def test_sft_split_keeps_the_cleaning_counts_and_says_them(tmp_path):
    """sft reads raw sources through split_conversations: its report (sft_report.json) and the printed line carry
    what cleaning changed."""
    from owngpt.data.raw import describe
    from owngpt.train.sft import SFTConfig, split_conversations

    rows = [{"messages": [{"role": "user", "content": f"mail {PII[0]} {i}"}, {"role": "assistant", "content": "ok"}]}
            for i in range(4)]
    src = write(tmp_path / "chats.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    train, _ = split_conversations(SFTConfig(data=[str(src)], val_fraction=0.25))
    cleaning = train.summary()["cleaning"]
    assert cleaning["pii_email"]["changed"] == 4
    line = describe(cleaning)
    assert line.startswith("cleaned as prepare does: ") and "pii_email changed 4" in line and PII[0] not in line
    assert describe({}) == "cleaned as prepare does: nothing to change"
