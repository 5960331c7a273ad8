"""Random-window batches from memory-mapped shards: shapes, shift, resumable state, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from owngpt.data.loader import TokenBatches
from owngpt.errors import OwnGPTError


def write_shards(root: Path, splits: dict[str, list[np.ndarray]], tokenizer_hash: str = "abc", dtype: str = "uint16") -> Path:
    """A minimal prepared folder: tokens/{split}_{k:04d}.bin + manifest.json, as `owngpt prepare` writes."""
    (root / "tokens").mkdir(parents=True, exist_ok=True)
    manifest = {"format": 1, "dtype": dtype, "tokenizer_hash": tokenizer_hash, "vocab_size": 1000, "splits": {}}
    for split, shards in splits.items():
        entries = []
        for k, arr in enumerate(shards):
            rel = f"tokens/{split}_{k:04d}.bin"
            np.asarray(arr, dtype=dtype).tofile(root / rel)
            entries.append({"file": rel, "tokens": len(arr), "sha256": ""})
        manifest["splits"][split] = {"documents": 1, "tokens": sum(len(a) for a in shards), "shards": entries}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_batches_are_shifted_windows(tmp_path):
    a, b = np.arange(0, 300), np.arange(1000, 1100)
    write_shards(tmp_path, {"train": [a, b]})
    tb = TokenBatches(tmp_path, "train", batch_size=8, block_size=16, seed=3)
    seen_shards = set()
    for _ in range(20):
        x, y = tb.next_batch()
        assert x.shape == y.shape == (8, 16) and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])
        # each window is consecutive ids from one shard: never straddles two files
        assert torch.all(y - x == 1)
        seen_shards |= {int(v >= 1000) for v in x[:, 0]}
    assert seen_shards == {0, 1}
    assert tb.tokens == 400


def test_state_dict_resumes_same_batches(tmp_path):
    write_shards(tmp_path, {"train": [np.arange(500)]})
    tb = TokenBatches(tmp_path, "train", 4, 8, seed=1)
    for _ in range(3):
        tb.next_batch()
    state = tb.state_dict()
    expected = [tb.next_batch()[0] for _ in range(3)]
    fresh = TokenBatches(tmp_path, "train", 4, 8, seed=1)
    fresh.load_state_dict(state)
    got = [fresh.next_batch()[0] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    # the state survives a weights_only round trip (it lives in train_state.pt)
    path = tmp_path / "s.pt"
    torch.save(state, path)
    assert torch.equal(torch.load(path, weights_only=True)["rng"], state["rng"])
    fresh.reset()
    assert torch.equal(fresh.next_batch()[0], TokenBatches(tmp_path, "train", 4, 8, seed=1).next_batch()[0])


def test_uint32_and_seed_changes_batches(tmp_path):
    write_shards(tmp_path, {"train": [np.arange(70000, 70500)]}, dtype="uint32")
    x1, _ = TokenBatches(tmp_path, "train", 4, 8, seed=1).next_batch()
    x2, _ = TokenBatches(tmp_path, "train", 4, 8, seed=2).next_batch()
    assert int(x1.min()) >= 70000 and not torch.equal(x1, x2)


def test_errors(tmp_path):
    write_shards(tmp_path, {"train": [np.arange(10)]}, tokenizer_hash="aaa")
    with pytest.raises(OwnGPTError, match="block_size"):
        TokenBatches(tmp_path, "train", 2, 16)
    with pytest.raises(OwnGPTError, match="aaa.*bbb"):
        TokenBatches(tmp_path, "train", 2, 4, tokenizer_hash="bbb")
    with pytest.raises(OwnGPTError, match="no 'val' split"):
        TokenBatches(tmp_path, "val", 2, 4)
