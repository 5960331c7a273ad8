"""Tests for owngpt/data/shards.py: round trip, dtype, shard limits, manifest validation, interrupted writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from owngpt.data.shards import (
    dtype_for,
    flatten_with_eot,
    read_manifest,
    read_shard,
    remove_stale_temps,
    tokenize_to_shards,
    write_manifest,
)
from owngpt.errors import OwnGPTError
from stand_in_tokenizer import ByteTokenizer

TEXTS = ["Hello, world!", "你好，世界。今天天气很好。", "emoji 🙂🚀 mixed 中文 and English", "", "x" * 300]


def expected_ids(tok, texts):
    return [i for t in texts for i in tok.encode(t) + [tok.eot_id]]


def write_split(tmp_path, tok, texts, split="train", shard_tokens=64):
    entry = tokenize_to_shards(tok, iter(texts), tmp_path, split, shard_tokens=shard_tokens, chunk_chars=50)
    manifest = {"format": 1, "dtype": dtype_for(tok.vocab_size), "tokenizer_hash": tok.hash,
                "vocab_size": tok.vocab_size, "splits": {split: entry}, "conversations": {}}
    write_manifest(tmp_path, manifest)
    return manifest


def test_round_trip_over_several_shards(tmp_path):
    tok = ByteTokenizer()
    m = write_split(tmp_path, tok, TEXTS)
    entry = m["splits"]["train"]
    assert entry["documents"] == len(TEXTS)
    assert len(entry["shards"]) > 3 and all(s["tokens"] <= 64 for s in entry["shards"])
    assert [s["file"] for s in entry["shards"]][:2] == ["tokens/train_0000.bin", "tokens/train_0001.bin"]
    back = np.concatenate([read_shard(tmp_path, s, m["dtype"]) for s in entry["shards"]])
    assert back.tolist() == expected_ids(tok, TEXTS)
    assert entry["tokens"] == len(back)
    assert read_manifest(tmp_path, verify=True)["splits"]["train"]["tokens"] == len(back)
    assert not list(tmp_path.rglob("*.tmp"))


def test_uint32_for_big_vocabularies(tmp_path):
    assert dtype_for(65536) == "uint16" and dtype_for(65537) == "uint32"
    tok = ByteTokenizer(vocab_size=70_000)  # eot id 69992 does not fit in uint16
    m = write_split(tmp_path, tok, TEXTS[:3], shard_tokens=10_000)
    assert m["dtype"] == "uint32"
    data = np.fromfile(tmp_path / m["splits"]["train"]["shards"][0]["file"], dtype="<u4")
    assert data.tolist() == expected_ids(tok, TEXTS[:3])


def test_flatten_with_eot():
    assert flatten_with_eot([[1, 2], [], [3]], 9).tolist() == [1, 2, 9, 9, 3, 9]


def test_manifest_validation_errors(tmp_path):
    with pytest.raises(OwnGPTError, match="manifest.json not found"):
        read_manifest(tmp_path)
    tok = ByteTokenizer()
    m = write_split(tmp_path, tok, TEXTS)
    first = tmp_path / m["splits"]["train"]["shards"][0]["file"]
    # a damaged byte: sizes still match, only verify=True notices
    data = bytearray(first.read_bytes())
    data[0] ^= 1
    first.write_bytes(bytes(data))
    read_manifest(tmp_path)
    with pytest.raises(OwnGPTError, match="sha256"):
        read_manifest(tmp_path, verify=True)
    first.write_bytes(bytes(data[:-2]))  # truncated
    with pytest.raises(OwnGPTError, match="bytes, but the manifest says"):
        read_manifest(tmp_path)
    first.unlink()
    with pytest.raises(OwnGPTError, match="missing"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**m, "format": 99}))
    with pytest.raises(OwnGPTError, match="format"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(OwnGPTError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_interrupted_write_never_looks_complete(tmp_path):
    tok = ByteTokenizer()

    def texts():
        yield from TEXTS
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of tokenization

    with pytest.raises(KeyboardInterrupt):
        tokenize_to_shards(tok, texts(), tmp_path, "train", shard_tokens=64, chunk_chars=10**9)
    # finished shards may exist, but without a manifest the folder is not a prepared folder
    (tmp_path / "tokens" / "train_0009.bin.tmp").write_bytes(b"\0\0")
    with pytest.raises(OwnGPTError, match="interrupted"):
        read_manifest(tmp_path)
    from owngpt.data.loader import TokenBatches

    with pytest.raises(OwnGPTError):
        TokenBatches(tmp_path, "train", batch_size=2, block_size=4)
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == ["train_0009.bin.tmp"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_loader_reads_what_we_wrote(tmp_path):
    from owngpt.data.loader import TokenBatches

    tok = ByteTokenizer()
    write_split(tmp_path, tok, TEXTS * 4, shard_tokens=10_000)
    batches = TokenBatches(tmp_path, "train", batch_size=3, block_size=8, tokenizer_hash=tok.hash)
    x, y = batches.next_batch()
    assert x.shape == (3, 8) and (x[:, 1:] == y[:, :-1]).all()
