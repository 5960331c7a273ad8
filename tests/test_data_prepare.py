"""Tests for owngpt/data/prepare.py and `owngpt prepare`: accounting, caching, splits, bad inputs, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import write
from owngpt.data.clean import CleanConfig
from owngpt.data.prepare import PrepareConfig, prepare
from owngpt.data.report import check_accounting
from owngpt.data.shards import read_manifest, read_shard
from owngpt.errors import OwnGPTError

def cfg(**kw) -> PrepareConfig:
    kw.setdefault("vocab_size", 512)
    return PrepareConfig(**kw)


EN = ["The library opens at nine every morning and closes at six.", "Cats sleep for most of the day, often in the sun.",
      "Rain is expected in the north this weekend, with strong winds.", "Bread is easy to bake at home with flour, water and salt.",
      "Trains to the airport leave every fifteen minutes from platform two."]
ZH = ["今天天气很好，我们去公园散步吧。", "人工智能正在改变我们的生活方式。", "这家餐厅的菜很好吃，价格也合理。",
      "图书馆每天早上九点开门，晚上六点关门。", "周末北方有雨，出门记得带伞。"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A tiny mixed zh/en corpus in every format, with some bad records."""
    root = tmp_path / "corpus"
    write(root / "notes" / "a.txt", EN[0] + "\n\n" + ZH[0])
    write(root / "notes" / "b.md", "# Title\n\n" + EN[1] + " Mail me: alice@example.com")
    write(root / "notes" / "dup.txt", EN[0] + "\n\n" + ZH[0])  # an exact duplicate of a.txt
    write(root / "notes" / "gbk.txt", ZH[1].encode("gb18030"))
    write(root / "notes" / "blob.txt", b"\x00\x01\x02binary\x00")
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in EN[2:] + ZH[2:]]
    lines.insert(2, '{"text": "broken')
    lines.append(json.dumps({"text": "电话 13812345678，身份证 11010519491231002X"}, ensure_ascii=False))
    write(root / "docs.jsonl", "\n".join(lines) + "\n")
    chats = [
        {"messages": [{"role": "user", "content": "Hi! What's your name?"}, {"role": "assistant", "content": "I'm owngpt."}]},
        {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！有什么可以帮你？"}]},
        {"conversations": [{"from": "human", "value": "How are you?"}, {"from": "gpt", "value": "Fine, thanks. And you?"}]},
        {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！有什么可以帮你？"}]},  # dup
        {"messages": [{"role": "assistant", "content": "I speak first"}, {"role": "user", "content": "wrong order"}]},
    ]
    write(root / "chats.jsonl", "\n".join(json.dumps(c, ensure_ascii=False) for c in chats) + "\n")
    write(root / "reviews.csv", "id,review\n1,\"Great phone, battery lasts two days\"\n2,物流很快，质量不错\n")
    write(root / "dialog.txt", "早上好\n早上好呀，吃早饭了吗？\n吃了\n\nGood night\nSleep well!\n")
    return root


def specs(root: Path) -> list[str]:
    return [str(root / "notes"), str(root / "docs.jsonl"), str(root / "chats.jsonl"), f"chitchat:{root / 'dialog.txt'}"]


def test_report_accounts_for_every_record(corpus, tmp_path):
    out = tmp_path / "out"
    rep = prepare(specs(corpus), out, cfg(), progress=False)
    check_accounting(rep)
    t = rep["total"]
    # notes: 5 files (1 binary skip); docs.jsonl: 8 lines (1 broken); chats: 5; dialog: 2 conversations
    assert t["records"] == 5 + 8 + 5 + 2
    assert t["skipped"] == 2
    assert t["documents"] == {"in": 11, "kept": 10, "changed": 2, "removed": 1}
    assert t["conversations"]["in"] == 7 and t["conversations"]["kept"] == 5 and t["conversations"]["removed"] == 2
    assert any("docs.jsonl:3" in s and "invalid JSON" in s for s in rep["skips"]["listed"])
    assert any("blob.txt" in s and "binary" in s for s in rep["skips"]["listed"])
    assert rep["converted_encodings"] == {"gb18030": 1}
    f = rep["filters"]
    assert f["exact_dup"]["removed"] == 1 and f["exact_dup_conversation"]["removed"] == 1
    assert f["invalid_conversation"]["removed"] == 1
    assert f["pii_email"]["changed"] == 1 and f["pii_phone"]["changed"] == 1 and f["pii_id"]["changed"] == 1
    assert f["pii_email"]["examples"][0]["after"].endswith("Mail me: <EMAIL>")
    docs = [json.loads(line) for s in ("train", "val", "test") for line in open(out / "docs" / f"{s}.jsonl", encoding="utf-8")]
    texts = "\n".join(d["text"] for d in docs)
    assert ZH[1] in texts  # the GB18030 file, converted
    assert "13812345678" not in texts and "alice@example.com" not in texts and "<ID>" in texts
    assert sum(rep["splits"]["documents"].values()) == 10 and rep["splits"]["documents"]["val"] >= 1
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["total"] == t


def test_shards_hold_the_documents_plus_eot(corpus, tmp_path):
    out = tmp_path / "out"
    prepare(specs(corpus), out, cfg(), progress=False)
    m = read_manifest(out, verify=True)
    from owngpt.tokenizer import Tokenizer

    tok = Tokenizer.load(out / "tokenizer")
    assert m["tokenizer_hash"] == tok.hash and m["vocab_size"] == tok.vocab_size and m["dtype"] == "uint16"
    for split, entry in m["splits"].items():
        texts = [json.loads(line)["text"] for line in open(out / "docs" / f"{split}.jsonl", encoding="utf-8")]
        assert entry["documents"] == len(texts)
        got = np.concatenate([read_shard(out, s, m["dtype"]) for s in entry["shards"]] or [np.zeros(0)]).tolist()
        assert got == [i for t in texts for i in tok.encode(t) + [tok.eot_id]]
    convs = m["conversations"]
    assert sum(c["conversations"] for c in convs.values()) == 5
    line = json.loads(open(out / convs["train"]["file"], encoding="utf-8").readline())
    assert set(line) == {"id", "source", "messages"} and line["messages"][0]["role"] == "user"


def test_second_run_does_no_work(corpus, tmp_path):
    out = tmp_path / "out"
    first = prepare(specs(corpus), out, cfg(), progress=False)
    shard = out / "tokens" / "train_0000.bin"
    before = shard.stat().st_mtime_ns
    again = prepare(specs(corpus), out, cfg(), progress=False)
    assert again["cached"] is True and first["cached"] is False
    assert shard.stat().st_mtime_ns == before
    changed = prepare(specs(corpus), out, cfg(near_dup_threshold=0.5), progress=False)  # new settings
    assert changed["cached"] is False
    write(corpus / "notes" / "new.txt", "A brand new note about sailing boats and the sea.")
    grown = prepare(specs(corpus), out, cfg(near_dup_threshold=0.5), progress=False)  # new input
    assert grown["cached"] is False and grown["total"]["documents"]["in"] == changed["total"]["documents"]["in"] + 1
    assert prepare(specs(corpus), out, cfg(near_dup_threshold=0.5), progress=False, force=True)["cached"] is False


def test_interrupted_prepare_is_redone(corpus, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare(specs(corpus), out, cfg(), progress=False)
    import owngpt.data.prepare as prep

    def crash(*a, **k):
        (out / "tokens" / "train_0000.bin.tmp").write_bytes(b"\1\2")
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "tokenize_to_shards", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(specs(corpus), out, cfg(), progress=False, force=True)
    assert not (out / "manifest.json").exists()  # the old shards do not look complete any more
    with pytest.raises(OwnGPTError):
        read_manifest(out)
    monkeypatch.undo()
    rep = prepare(specs(corpus), out, cfg(), progress=False)
    assert rep["cached"] is False and not list(out.rglob("*.tmp"))
    read_manifest(out, verify=True)


def test_split_is_deterministic_and_independent_of_order(corpus, tmp_path):
    a = prepare(specs(corpus), tmp_path / "a", cfg(), progress=False)
    b = prepare(list(reversed(specs(corpus))), tmp_path / "b", cfg(), progress=False)
    for split in ("train", "val", "test"):
        ids = [{json.loads(line)["id"] for line in open(tmp_path / d / "docs" / f"{split}.jsonl", encoding="utf-8")}
               for d in ("a", "b")]
        assert ids[0] == ids[1]
    assert a["splits"]["documents"] == b["splits"]["documents"]


def test_tail_split_of_one_long_text(tmp_path):
    text = "".join(f"Line {i}: the quick brown fox number {i} jumps.\n" for i in range(400))
    src = write(tmp_path / "shakespeare.txt", text)
    rep = prepare([str(src)], tmp_path / "out", cfg(split=(0.9, 0.1, 0.0), split_mode="tail", tail=0.1,
                                                    tokenizer_kind="char", dedup=False), progress=False)
    train = [json.loads(x)["text"] for x in open(tmp_path / "out" / "docs" / "train.jsonl", encoding="utf-8")]
    val = [json.loads(x)["text"] for x in open(tmp_path / "out" / "docs" / "val.jsonl", encoding="utf-8")]
    assert train[0] + val[0] == text.strip()
    assert val[0].startswith("Line ") and abs(len(val[0]) / len(text) - 0.1) < 0.01
    assert rep["splits"]["documents"] == {"train": 1, "val": 1, "test": 0}


def test_conversations_as_text_and_max_documents(corpus, tmp_path):
    rep = prepare([str(corpus / "chats.jsonl")], tmp_path / "out", cfg(conversations_as_text=True), progress=False)
    t = rep["total"]
    assert t["conversations_as_text"]["in"] == 5 and t["conversations_as_text"]["kept"] == 4  # one exact dup
    docs = [json.loads(x)["text"] for s in ("train", "val", "test")
            for x in open(tmp_path / "out" / "docs" / f"{s}.jsonl", encoding="utf-8")]
    assert "Hi! What's your name?\nI'm owngpt." in docs
    small = prepare(specs(corpus), tmp_path / "small", cfg(max_documents=3), progress=False)
    assert small["total"]["documents"]["in"] + small["total"]["conversations"]["in"] == 3


def test_bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OwnGPTError, match="no readable files"):
        prepare([str(empty)], tmp_path / "o1", cfg(), progress=False)
    csv = write(tmp_path / "r.csv", "id,review\n1,good\n")
    with pytest.raises(OwnGPTError, match="no column 'text'"):
        prepare([str(csv)], tmp_path / "o2", cfg(), progress=False)
    blob = write(tmp_path / "bin" / "x.txt", b"\x00\xff\x00\xfe" * 100)
    with pytest.raises(OwnGPTError, match="nothing to prepare"):
        prepare([str(blob.parent)], tmp_path / "o3", cfg(), progress=False)
    assert json.loads((tmp_path / "o3" / "report.json").read_text())["skips"]["by_reason"] == {"binary file": 1}
    assert not (tmp_path / "o3" / "manifest.json").exists()
    with pytest.raises(OwnGPTError, match="no such file"):
        prepare([str(tmp_path / "missing.txt")], tmp_path / "o4", cfg(), progress=False)
    with pytest.raises(OwnGPTError, match="split ratios"):
        prepare([str(csv)], tmp_path / "o5", cfg(split=(0, 1, 0)), progress=False)
    only_short = write(tmp_path / "short.txt", "hi")
    with pytest.raises(OwnGPTError, match="removed by filters"):
        prepare([str(only_short)], tmp_path / "o6", cfg(clean=CleanConfig(min_chars=10)), progress=False)


def test_cli_end_to_end(corpus, tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    _register()
    out = tmp_path / "cli-out"
    runner = CliRunner()
    args = ["prepare", *specs(corpus), str(corpus / "reviews.csv"), "--out", str(out), "--text-column", "review",
            "--vocab-size", "512", "--conversations-as-text", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sources" in result.output and "filters" in result.output and "pii_email" in result.output
    m = read_manifest(out, verify=True)
    assert m["splits"]["train"]["tokens"] > 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.output
    listing = runner.invoke(app, ["data", "builtins"])
    assert listing.exit_code == 0 and "builtin:peoples-daily" in listing.output


def test_cli_error_is_one_line(tmp_path, capsys):
    from owngpt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err


def test_cli_interrupt_exits_130(tmp_path, capsys, monkeypatch):
    import owngpt.data.prepare as prep
    from owngpt.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "prepare", interrupted)
    with pytest.raises(SystemExit) as e:
        main(["prepare", str(tmp_path), "--out", str(tmp_path / "o")])
    assert e.value.code == 130 and "interrupted" in capsys.readouterr().err


def test_given_tokenizer_tokenizes_while_reading(corpus, tmp_path):
    first = tmp_path / "first"
    prepare(specs(corpus), first, cfg(), progress=False)
    lines = [json.dumps({"text": f"Document {i}: {EN[i % 5]} {ZH[(i * 3) % 5]} {i * 7919}"}, ensure_ascii=False)
             for i in range(80)]
    src = write(tmp_path / "many.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "second"
    rep = prepare([str(src)], out, cfg(tokenizer=str(first / "tokenizer"), near_dup_threshold=0), progress=False)
    assert rep["splits"]["moved_to_val"]["documents"] is False and rep["tokenizer"]["trained"] is False
    m = read_manifest(out, verify=True)
    from owngpt.tokenizer import Tokenizer

    tok = Tokenizer.load(first / "tokenizer")
    assert m["tokenizer_hash"] == tok.hash
    for split, entry in m["splits"].items():
        texts = [json.loads(line)["text"] for line in open(out / "docs" / f"{split}.jsonl", encoding="utf-8")]
        got = np.concatenate([read_shard(out, s, m["dtype"]) for s in entry["shards"]] or [np.zeros(0)]).tolist()
        assert got == [i for t in texts for i in tok.encode(t) + [tok.eot_id]] and entry["documents"] == len(texts)


def test_worker_processes_give_the_same_output(corpus, tmp_path, monkeypatch):
    """Cleaning in worker processes (large inputs) writes exactly what the single-process path writes."""
    import owngpt.data.workers as workers

    near = [json.dumps({"text": f"{EN[i % 5]} {ZH[i % 5]} Note {i % 7}."}, ensure_ascii=False) for i in range(60)]
    write(corpus / "near.jsonl", "\n".join(near) + "\n")  # near and exact duplicates across chunks
    sources = specs(corpus) + [str(corpus / "near.jsonl")]
    monkeypatch.setattr(workers, "CHUNK", 4)
    serial = prepare(sources, tmp_path / "serial", cfg(workers=1, conversations_as_text=True), progress=False)
    pools = []
    start = workers.start_pool

    def spy(*a, **k):
        pools.append(start(*a, **k))
        return pools[-1]

    monkeypatch.setattr("owngpt.data.prepare.start_pool", spy)
    pooled = prepare(sources, tmp_path / "pooled", cfg(workers=2, conversations_as_text=True), progress=False)
    if sys.platform == "linux":
        assert pools and pools[0] is not None  # the worker processes really ran
    for rep in (serial, pooled):
        rep.pop("seconds"), rep.pop("throughput_mb_per_s")
    assert pooled == serial
    assert serial["filters"]["near_dup"]["removed"] > 0 and serial["filters"]["exact_dup"]["removed"] > 0
    files = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*")
                   if p.is_file() and p.name != "report.json" and p.parent.name != "tokenizer")
    assert files
    for f in files:
        assert (tmp_path / "pooled" / f).read_bytes() == (tmp_path / "serial" / f).read_bytes(), f


def test_skip_reasons_group_by_cause_without_mangling(tmp_path):
    """The grouping key used to replace every digit and cut at the first colon: "invalid UTF-N at byte N; re-save
    it as UTF-N", "not a readable file type (readable", and "'messages' message N" (the cause lost)."""
    from owngpt.data.records import reason_kind

    src = tmp_path / "in"
    write(src / "good.txt", "A perfectly good note about the garden.\n")
    write(src / "bad1.txt", b"caf\xe9 au lait, and then more text after it to make it long enough")
    write(src / "bad2.txt", b"na\xefve text with one latin-1 byte, and more words after it as well")
    write(src / "x.pdf", b"%PDF-1.4 fake")
    write(src / "c.jsonl", "\n".join(json.dumps({"messages": [{"role": r, "content": "hi"}]}) for r in ("narrator", "narrator"))
          + "\n{broken\n")
    rep = prepare([str(src)], tmp_path / "out", PrepareConfig(vocab_size=300), progress=False)
    kinds = rep["skips"]["by_reason"]
    assert kinds["invalid UTF-8 at byte N; re-save it as UTF-8 (e.g. iconv -f ENCODING -t UTF-8)"] == 2
    assert any(k.startswith("not a readable file type (readable: .txt") for k in kinds)
    assert sum(v for k, v in kinds.items() if "unknown role 'narrator'" in k) == 2
    assert any(k.startswith("invalid JSON: ") for k in kinds)
    assert reason_kind("x.jsonl:17: invalid JSON: Expecting value at column 5") == \
        "invalid JSON: Expecting value at column N"
