"""Shared by the LSTM and seq2seq baseline tests: a tiny prepared folder and chats, pretrain + sft through the real
recipes, greedy generation, and exact resume after a crash or a SIGKILL (the approach of test_train_loop.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from torch.testing import assert_close

from owngpt.config import load_run_config
from owngpt.generate import GenerationConfig
from owngpt.generate.engine import generate_ids
from owngpt.model.lstm import LSTMConfig, LSTMLM
from owngpt.model.seq2seq import Seq2Seq, Seq2SeqConfig
from owngpt.tokenizer import render_prompt, train_char

CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'\n"


def conv(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"tell me about {i}"}, {"role": "assistant", "content": f"{i} is nice"},
            {"role": "user", "content": f"and {i + 1}?"}, {"role": "assistant", "content": f"{i + 1} is fine"}]


def write_prepared(root: Path):
    """A folder as `owngpt prepare` writes it (char tokenizer, train and val shards of short documents) and a
    chats.jsonl beside it; returns the tokenizer."""
    docs = [f"the number {i} is a number. the fox walks to {i}." for i in range(240)]
    tok = train_char(docs + [CHARS, "system user assistant"])
    tok.save(root / "tokenizer")
    (root / "tokens").mkdir(parents=True)
    manifest = {"format": 1, "dtype": "uint16", "tokenizer_hash": tok.hash, "vocab_size": tok.vocab_size, "splits": {}}
    for split, part in (("train", docs[:220]), ("val", docs[220:])):
        ids = np.array([t for d in part for t in tok.encode(d) + [tok.eot_id]], dtype=np.uint16)
        ids.tofile(root / f"tokens/{split}_0000.bin")
        manifest["splits"][split] = {"documents": len(part), "tokens": len(ids),
                                     "shards": [{"file": f"tokens/{split}_0000.bin", "tokens": len(ids), "sha256": ""}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    with open(root.parent / "chats.jsonl", "w", encoding="utf-8") as f:
        for i in range(300):
            f.write(json.dumps({"messages": conv(i)}) + "\n")
    return tok


TRAIN = ["train.batch_size=8", "train.eval_interval=20", "train.eval_batches=2", "train.log_interval=1",
         "train.warmup_steps=4", "train.device=cpu", "train.dtype=float32", "train.compile=off",
         "train.tensorboard=false", "train.lr=1e-2", "train.min_lr=1e-3"]


def pretrain_and_sft(root: Path, arch: str, steps: int = 40) -> dict:
    """Pretrain a tiny `arch` model with owngpt.train.pretrain.pretrain on the prepared folder, then fine-tune it with
    owngpt.train.sft.sft on the chats; returns the tokenizer, both run folders and both runs' train losses."""
    from owngpt.train.pretrain import pretrain
    from owngpt.train.sft import SFTConfig, sft

    data = root / "data"
    tok = write_prepared(data)
    base, chat = root / "base", root / "chat"
    run_cfg = load_run_config("tiny-cpu", [f"model.arch={arch}", "model.n_layer=1", "model.n_embd=32", "model.n_head=2",
                                           "model.block_size=96", f"train.max_steps={steps}", f"train.data={data}",
                                           f"train.out_dir={base}", *TRAIN])
    pretrain(run_cfg, quiet=True, echo=lambda line: None)
    train_cfg = load_run_config("tiny-cpu", [f"train.max_steps={steps}", f"train.out_dir={chat}", *TRAIN]).train
    sft(SFTConfig(base=str(base), data=[str(root / "chats.jsonl")]), train_cfg, quiet=True)
    return {"tok": tok, "base": base, "chat": chat, "pretrain_losses": train_losses(base),
            "sft_losses": train_losses(chat)}


def train_losses(run: Path) -> dict[int, float]:
    from owngpt.train.metrics import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"}


def falls(losses: dict[int, float], ratio: float) -> bool:
    """Whether the mean of the last 5 steps' losses is below `ratio` times the first step's."""
    steps = sorted(losses)
    return float(np.mean([losses[s] for s in steps[-5:]])) < ratio * losses[steps[0]]


def greedy_batched_equals_alone(model, tok, messages_list: list[list[dict[str, str]]]) -> list[list[int]]:
    """Greedy replies to several chats of different lengths, batched (left-padded) and one by one: the same tokens."""
    cfg = GenerationConfig(max_new_tokens=12, temperature=0.0)
    prompts = [render_prompt(tok, m) for m in messages_list]
    assert len({len(p) for p in prompts}) > 1  # rows of unequal length: the batch is padded
    stops = [tok.eot_id, tok.im_end_id]
    batched = generate_ids(model, prompts, cfg, stop_ids=stops, tokenizer=tok)
    alone = [generate_ids(model, [p], cfg, stop_ids=stops, tokenizer=tok)[0] for p in prompts]
    assert batched == alone and any(batched)
    return batched


def padded_rows_equal_alone(model, rows: list[list[int]], reference=None) -> None:
    """model(left-padded batch, valid) gives each row's logits exactly as the row alone does (or as
    `reference(model, row)` computes them)."""
    T = max(len(r) for r in rows)
    idx = torch.zeros(len(rows), T, dtype=torch.long)
    valid = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, r in enumerate(rows):
        idx[i, T - len(r):] = torch.tensor(r)
        valid[i, T - len(r):] = True
    with torch.no_grad():
        batched = model(idx, valid=valid)
        for i, r in enumerate(rows):
            alone = reference(model, r) if reference is not None else model(torch.tensor([r]))[0]
            assert_close(batched[i, T - len(r):], alone, rtol=1e-5, atol=1e-5)


def causal(model, vocab: int, T: int = 20) -> None:
    """Changing the ids after column t changes no logits at columns <= t."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (2, T), generator=g)
    with torch.no_grad():
        ref = model(x)
        for t in (0, 5, T - 2):
            y = x.clone()
            y[:, t + 1:] = torch.randint(0, vocab, (2, T - t - 1), generator=g)
            assert_close(model(y)[:, : t + 1], ref[:, : t + 1], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- exact resume (test_train_loop.py's way)


def header_of(data: Path) -> list[int]:
    """A one-token "assistant header" that is frequent in test_train_loop's random corpus, so that seq2seq rows there
    hold many segments and the encoder takes part in training."""
    ids = np.fromfile(data / "tokens/train_0000.bin", dtype=np.uint16).astype(np.int64)
    counts = np.bincount(ids)
    counts[0] = 0
    return [int(counts.argmax())]


def small_model(arch: str, data: Path, seed: int = 0, dropout: float = 0.1):
    """A tiny model of `arch` for test_train_loop's corpus (VOCAB 32, BLOCK 16), with dropout so that resume must
    restore the random state too."""
    from test_train_loop import BLOCK, VOCAB

    torch.manual_seed(seed)
    if arch == "lstm":
        return LSTMLM(LSTMConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_embd=16, dropout=dropout))
    return Seq2Seq(Seq2SeqConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16, dropout=dropout,
                                 header=header_of(data)))


def resume_equals_uninterrupted_run(tmp_path: Path, data: Path, arch: str) -> None:
    """A run that crashes during step 14 and resumes from its step-10 checkpoint logs the same losses as a straight
    run (test_train_loop.test_resume_equals_uninterrupted_run with this arch)."""
    import pytest

    from owngpt.data.loader import TokenBatches
    from owngpt.train.loop import fit
    from test_train_loop import BLOCK, DyingBatches, Interrupt, cfg, loaders

    straight = tmp_path / "straight"
    fit(small_model(arch, data), *loaders(data), cfg(max_steps=20), straight, run_config={}, quiet=True)
    crashed = tmp_path / "crashed"
    train = DyingBatches(data, "train", 4, BLOCK, seed=1)
    train.die_after = 13  # checkpoints at steps 5 and 10; dies during step 14
    with pytest.raises(Interrupt):
        fit(small_model(arch, data), train, TokenBatches(data, "val", 4, BLOCK, seed=2), cfg(max_steps=20), crashed,
            run_config={}, quiet=True)
    result = fit(small_model(arch, data, seed=99), *loaders(data), cfg(max_steps=20), crashed, run_config={},
                 quiet=True)
    assert result.resumed_from.endswith("step_0000010")
    same_losses(straight, crashed, 20)


def same_losses(a: Path, b: Path, steps: int) -> None:
    la, lb = train_losses(a), train_losses(b)
    assert sorted(la) == sorted(lb) == list(range(1, steps + 1))
    for step in la:
        assert abs(la[step] - lb[step]) <= 1e-5, step


_CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
from pathlib import Path
from neural_fixtures import small_model
from test_train_loop import loaders, cfg
from owngpt.train.loop import fit
torch.set_num_threads(1)
data = Path({data!r})
fit(small_model({arch!r}, data), *loaders(data), cfg(max_steps=30, save_interval=3, eval_interval=10), Path({run!r}),
    run_config={{}}, quiet=True)
"""


def _child(data: Path, run: Path, arch: str) -> list[str]:
    code = textwrap.dedent(_CHILD.format(tests=str(Path(__file__).parent), data=str(data), run=str(run), arch=arch))
    return [sys.executable, "-c", code]


def sigkill_then_resume(tmp_path: Path, data: Path, arch: str) -> None:
    """A real process killed with SIGKILL at an arbitrary moment, resumed: the same losses as a straight run."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_child(data, straight, arch), check=True, timeout=300)
    proc = subprocess.Popen(_child(data, killed, arch))
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a few checkpoints exist, at whatever it is doing then
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 12:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    subprocess.run(_child(data, killed, arch), check=True, timeout=300)
    same_losses(straight, killed, 30)
