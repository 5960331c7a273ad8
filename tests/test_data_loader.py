"""Training batches: random windows from memory-mapped shards (shapes, shift, resumable state, errors) and
packed conversations (targets exactly the assistant tokens, resumable order)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from owngpt.data.loader import PackedBatches, TokenBatches
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


def test_packed_targets_are_exactly_masked_tokens():
    # ids 10.. are "user" tokens (mask 0); ids 100.. are "assistant" tokens (mask 1).
    a = ([10, 11, 100, 101, 102], [0, 0, 1, 1, 1])
    b = ([12, 103, 104], [0, 1, 1])
    pb = PackedBatches([a, b], block_size=9, batch_size=1, pad_id=0, shuffle=False)
    x, y = pb.next_batch()
    assert x.shape == (1, 9) and y.shape == (1, 9)
    targets = [t for t in y[0].tolist() if t != -1]
    assert sorted(targets) == [100, 101, 102, 103, 104]
    # every kept target is the next input token
    row = x[0].tolist()
    n_inputs = sum(t != 0 for t in row)  # pad id 0 is not used by the examples
    for i, t in enumerate(y[0].tolist()[: n_inputs - 1]):
        if t != -1:
            assert row[i + 1] == t


def test_packed_batches_resume_same_order():
    ex = [([1, 2, 3, 4], [0, 1, 1, 1])] * 10
    pb = PackedBatches(ex, block_size=3, batch_size=2, pad_id=0, seed=3)
    for _ in range(4):
        pb.next_batch()
    state = pb.state_dict()
    want = [pb.next_batch()[0] for _ in range(6)]
    pb2 = PackedBatches(ex, block_size=3, batch_size=2, pad_id=0, seed=3)
    pb2.load_state_dict(state)
    got = [pb2.next_batch()[0] for _ in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(want, got))


def test_in_order_pass_covers_every_row_once():
    """An unshuffled pass ends with the leftover rows (not a wrap to row 0); batches_per_pass counts it."""
    ex = [([i, i, i], [0, 1, 1]) for i in range(1, 6)]  # 5 one-example rows (each fills block 2)
    pb = PackedBatches(ex, block_size=2, batch_size=2, pad_id=0, shuffle=False)
    assert pb.batches_per_pass == 3
    seen = [r[0] for _ in range(pb.batches_per_pass) for r in pb.next_batch()[0].tolist()]
    assert sorted(seen) == [1, 2, 3, 4, 5]
    assert pb.next_batch()[0][:, 0].tolist() == [1, 2]  # then the next pass
    shuffled = PackedBatches(ex, block_size=2, batch_size=2, pad_id=0, seed=1)
    assert shuffled.batches_per_pass == 2  # whole batches of one epoch


def test_data_position_of_the_other_kind_of_run_is_refused(tmp_path):
    ex = [([1, 2, 3, 4], [0, 1, 1, 1])] * 4
    pb = PackedBatches(ex, block_size=3, batch_size=2, pad_id=0)
    with pytest.raises(OwnGPTError, match="other kind of run"):
        pb.load_state_dict({"rng": torch.zeros(5, dtype=torch.uint8), "batches": 3, "seed": 1})
    root = write_shards(tmp_path, {"train": [np.arange(100, dtype=np.uint16)]})
    tb = TokenBatches(root, "train", 2, 4)
    with pytest.raises(OwnGPTError, match="other kind of run"):
        tb.load_state_dict(pb.state_dict())
