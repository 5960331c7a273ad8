"""Training speed on a CPU: nanoGPT's baby-GPT recipe (baseline) against owngpt's fit(), measured in one run.

  (a) baseline: nanoGPT itself, rebuilt in benchmarks/nanogpt_ref.py — its model.py (erf GELU, no biases as
      train.py's default, SDPA) and its train.py loop as its CPU command runs it: fp32 eager, for-loop AdamW that
      also decays embeddings, a fresh memmap batch and an .item() every step, 20 train + 20 val eval batches
      every 250 steps, a torch.save whenever validation improves;
  (b) owngpt: the same recipe (gpt2 preset: GPT-2's tanh GELU) through fit() with its defaults — bf16
      autocast on CPUs with AMX (fp32 elsewhere), fused AdamW, threads pinned: the tokens/s ratio and the
      same-loss check;
  (bc) (b) with torch.compile (train.compile=on; steady-state tokens/s, the compile time is in the wall time);
  (b32) the same as (b) forced to fp32: what the precision contributes and what the rest of fit() does;
  (c) time-to-loss: the tiny-cpu preset through fit(): does its whole run (wall time, final loss by the
      shared evaluator) reach (a)'s final validation loss in at most half of (a)'s wall time?
  (ca) (c) with train.optimizer=adamw (tiny-cpu's optimizer until Muon replaced it on the hidden matrices);
  (c64), (c64a) tiny-cpu's model at the baseline's context, 64 (AT_CONTEXT_64): Muon at batch 16, and AdamW;
  (cb) (c) forced to bf16 autocast (native on CPUs with AMX or avx512_bf16, emulated and slower elsewhere).
  For the (c*) rows the time-to-loss curve is read with the shared evaluator: a checkpoint every --curve-every steps
  (a tenth of the run by default; the recipe's own validations unchanged) is scored afterwards on the same windows as
  (a), and "time to (a)'s loss" is the run's wall time when it saved the first checkpoint at or below it; "loss at
  (a)'s wall time" is the best one by then. A recipe's own validation that improves writes a checkpoint too (a point
  off the grid), and the last point's time includes the run's final validation.
  The C library's allocator setting (owngpt/allocator.py) is in force for every contender (fit() sets it), the
  baseline included, which runs in the same process; its own before/after is benchmarks/bench_allocator.py.

Data: the built-in chitchat corpus as characters (char-level, like nanoGPT's shakespeare_char).
Every final loss is re-measured by one shared evaluator (the same 200 fixed 64-token validation windows).

    nice python benchmarks/bench_train.py            # full: 2000 baseline steps, ~7 min on 2 cores
    python benchmarks/bench_train.py --iters 500     # reduced
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from owngpt.config import load_run_config
from owngpt.data.loader import TokenBatches
from owngpt.train.loop import fit
from owngpt.train.metrics import read_metrics
from owngpt.runtime import cpu_bf16_support, cpu_has_bf16_matmul

from nanogpt_ref import RefConfig, RefTrain, train_reference


def char_corpus(max_chars: int) -> tuple[np.ndarray, np.ndarray, int]:
    """chitchat dialogues as one text, characters seen >= 5 times get ids (others -> id of '?'); 90/10 split."""
    from owngpt.data.builtin import read_builtin
    from owngpt.data.records import Conversation, Document

    parts, size = [], 0
    for rec in read_builtin("chitchat"):
        text = "\n".join(m["content"] for m in rec.messages) if isinstance(rec, Conversation) else (
            rec.text if isinstance(rec, Document) else "")
        parts.append(text + "\n\n")
        size += len(parts[-1])
        if size >= max_chars:
            break
    text = "".join(parts)[:max_chars]
    chars, counts = np.unique(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), return_counts=True)
    keep = chars[counts >= 5]
    lut = {int(c): i for i, c in enumerate(keep)}
    unk = lut.get(ord("?"), 0)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.array([lut.get(int(c), unk) for c in codes], dtype=np.uint16)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], len(keep)


def write_prepared(root: Path, train: np.ndarray, val: np.ndarray, vocab: int) -> Path:
    (root / "tokens").mkdir(parents=True, exist_ok=True)
    manifest = {"format": 1, "dtype": "uint16", "tokenizer_hash": "bench-char", "vocab_size": vocab, "splits": {}}
    for split, ids in (("train", train), ("val", val)):
        ids.tofile(root / f"tokens/{split}_0000.bin")
        ids.tofile(root / f"{split}.bin")  # nanoGPT's layout, for the baseline
        manifest["splits"][split] = {"documents": 1, "tokens": len(ids),
                                     "shards": [{"file": f"tokens/{split}_0000.bin", "tokens": len(ids), "sha256": ""}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


EVAL_BLOCK = 64  # the baseline's context: every model is judged on the same 64-token windows

# tiny-cpu's model trained at the baseline's own context (64): the same tokens in shorter rows, so more of them per
# second and more optimizer steps. Muon wants a larger batch and a higher rate there than at the quickstart's shape,
# and a run this short a 5-step warmup rather than tiny-cpu's 30 (measured: docs/benchmarks.md); AdamW keeps
# tiny-cpu's rate with half its batch.
AT_CONTEXT_64 = {
    "c64": ["model.block_size=64", "train.batch_size=16", "train.max_steps=300", "train.muon_lr=1e-2",
            "train.warmup_steps=5"],
    "c64a": ["model.block_size=64", "train.max_steps=940", "train.optimizer=adamw"],
}


@torch.no_grad()
def shared_val_loss(model, val: np.ndarray, block: int, n: int = 200) -> float:
    """The one evaluator all contenders are judged by: n fixed windows of the validation split."""
    g = np.random.default_rng(1234)
    starts = g.integers(0, len(val) - block - 1, size=n)
    rows = torch.from_numpy(np.stack([val[s : s + block + 1] for s in starts]).astype(np.int64))
    was = model.training
    model.eval()
    losses = []
    for chunk in rows.split(50):
        logits = model(chunk[:, :-1])
        logits = logits[0] if isinstance(logits, tuple) else logits  # nanoGPT's model returns (logits, loss)
        losses.append(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1)))
    model.train(was)
    return float(torch.stack(losses).mean())


def build_model(run_cfg, vocab: int):
    from owngpt.model.gpt import GPT

    model_cfg = dataclasses.replace(run_cfg.model, vocab_size=vocab)
    torch.manual_seed(1337)
    return GPT(model_cfg)


def nanogpt_baseline(run_cfg, data_dir: Path, val: np.ndarray, vocab: int, iters: int, out: Path) -> dict:
    """nanoGPT's own model and train.py loop (benchmarks/nanogpt_ref.py) with the baby-GPT settings."""
    m, t = run_cfg.model, run_cfg.train
    ref_model = RefConfig(vocab_size=vocab, block_size=m.block_size, n_layer=m.n_layer, n_head=m.n_head,
                          n_embd=m.n_embd, dropout=m.dropout)
    ref_train = RefTrain(batch_size=t.batch_size, max_iters=iters, lr=t.lr, min_lr=t.min_lr, warmup_iters=t.warmup_steps,
                         lr_decay_iters=iters, weight_decay=t.weight_decay, beta1=t.beta1, beta2=t.beta2,
                         grad_clip=t.grad_clip, eval_interval=t.eval_interval, eval_iters=t.eval_batches)
    r = train_reference(data_dir, ref_model, ref_train, out)
    # the statistic fit()'s rows use: the median rate of 10-step intervals after step 50 (training time only)
    times = r["step_times"]
    rates = [10 * r["tokens_per_step"] / sum(times[i : i + 10]) for i in range(50, len(times) - 9, 10)]
    return {"wall": r["wall"], "tokens_per_s": float(np.median(rates)), "val": shared_val_loss(r["model"], val, EVAL_BLOCK),
            "curve": r["curve"], "steps": iters + 1}


def shared_curve(run_dir: Path, val: np.ndarray) -> list[tuple[float, int, float]]:
    """(elapsed s, step, shared-evaluator loss) of every checkpoint the run kept, in step order; the elapsed time is
    the one the run wrote into the checkpoint when it saved it (its wall time so far, earlier saves included)."""
    from owngpt.checkpoint.format import load_checkpoint, load_model

    curve = []
    for ckpt in sorted((run_dir / "checkpoints").glob("step_*")):  # step_0000330: zero-padded, so in step order
        step = int(ckpt.name.removeprefix("step_"))
        _weights, _meta, train_state = load_checkpoint(ckpt)
        model, _meta, _tok = load_model(ckpt, device="cpu")
        curve.append((float(train_state["elapsed"]), step, shared_val_loss(model, val, EVAL_BLOCK)))
    return curve


def ours(run_cfg, data_dir: Path, run_dir: Path, val: np.ndarray, vocab: int, target: float | None = None,
         curve_every: int = 0) -> dict:
    cfg = run_cfg.train
    if curve_every:
        # a checkpoint every curve_every steps, all kept, which the shared evaluator scores afterwards; the recipe's
        # own validation is left as it is, so the curve charges the run its checkpoint writes, not ten extra
        # validations of 20 batches each that a run of the recipe does not make
        cfg = dataclasses.replace(cfg, save_interval=curve_every, keep_last=10**6)
    model = build_model(run_cfg, vocab)
    T = run_cfg.model.block_size
    tb = TokenBatches(data_dir, "train", cfg.batch_size, T, seed=cfg.seed)
    vb = TokenBatches(data_dir, "val", cfg.batch_size, T, seed=cfg.seed + 1)
    t0 = time.perf_counter()
    result = fit(model, tb, vb, cfg, run_dir, run_config={"train": dataclasses.asdict(cfg)}, quiet=True)
    wall = time.perf_counter() - t0
    curve = shared_curve(run_dir, val) if curve_every else [
        (r["elapsed"], r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "val"]
    reached = next((t for t, _s, v in curve if target is not None and v <= target), None)
    # steady state: median tokens/s of the logging intervals (10 steps) after the first 50 steps (compile, warm-up
    # excluded; evaluation is kept out of fit()'s intervals) — the same statistic as the baseline's
    rates = [r["tokens_per_s"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train" and r["step"] > 50]
    return {"wall": wall, "tokens_per_s": float(np.median(rates)) if rates else result.tokens_per_s, "val": shared_val_loss(model, val, EVAL_BLOCK), "curve": curve,
            "time_to_target": reached, "steps": result.steps,
            "dtype": {"float32": "fp32", "bfloat16": "bf16"}.get(cfg.dtype, cfg.dtype) if cfg.dtype != "auto" else ("bf16" if cpu_has_bf16_matmul() else "fp32")}


def loss_at(curve: list[tuple[float, int, float]], seconds: float) -> float:
    """Best validation loss recorded by `seconds` of wall time."""
    seen = [v for t, _s, v in curve if t <= seconds]
    return min(seen) if seen else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=2000, help="baseline steps (nanoGPT: 2000)")
    ap.add_argument("--chars", type=int, default=2_000_000, help="characters of chitchat text to use")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for all contenders")
    ap.add_argument("--recipe", default="tiny-cpu", help="preset for (c)")
    ap.add_argument("--set", action="append", default=[], help="override for (c), e.g. train.batch_size=32")
    ap.add_argument("--skip", default="", help="comma list of contenders to skip: b,bc,b32,c,ca,c64,c64a,cb")
    ap.add_argument("--curve-every", type=int, default=0,
                    help="steps between the (c*) rows' checkpoints (0: a tenth of each run's steps)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, val, vocab = char_corpus(args.chars)
    vocab_padded = -(-vocab // 64) * 64
    print(f"corpus: {len(train):,} train / {len(val):,} val chars, vocab {vocab} (padded {vocab_padded}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_bf16_support() or 'none'}")
    base_cfg = load_run_config("baby-gpt", [f"train.max_steps={args.iters}"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = write_prepared(tmp / "data", train, val, vocab)
        a = nanogpt_baseline(base_cfg, data_dir, val, vocab, args.iters, tmp / "a")
        rows.append(("(a) nanoGPT (model.py + train.py), fp32", a))
        print(f"(a) done: {a['wall']:.1f}s, val {a['val']:.4f}")
        for name, dtype, compile_ in (("b", "auto", "off"), ("bc", "auto", "on"), ("b32", "float32", "off")):
            if name in args.skip.split(","):
                continue
            b_cfg = dataclasses.replace(base_cfg, train=dataclasses.replace(
                base_cfg.train, threads=args.threads, compile=compile_, tensorboard=False, device="cpu",
                eval_interval=250, save_interval=10**9, dtype=dtype))
            b = ours(b_cfg, data_dir, tmp / name, val, vocab_padded)
            rows.append((f"({name}) fit(), same recipe, {b['dtype']}, compile {compile_}", b))
            print(f"({name}) done: {b['wall']:.1f}s, val {b['val']:.4f}")
        for name, extra in (("c", []), ("ca", ["train.optimizer=adamw"]), ("c64", AT_CONTEXT_64["c64"]),
                            ("c64a", AT_CONTEXT_64["c64a"]), ("cb", ["train.dtype=bfloat16"])):
            if name in args.skip.split(","):
                continue
            c_cfg = load_run_config(args.recipe, args.set + extra + [
                "train.tensorboard=false", "train.device=cpu", f"train.threads={args.threads}"])
            every = args.curve_every or max(1, c_cfg.train.max_steps // 10)
            c = ours(c_cfg, data_dir, tmp / name, val, vocab_padded, target=a["val"], curve_every=every)
            label = " ".join(args.set + extra)
            rows.append((f"({name}) fit(), {' '.join(filter(None, [args.recipe, label]))}, {c['dtype']}", c))
            print(f"({name}) done: {c['wall']:.1f}s, val {c['val']:.4f}; curve "
                  + ", ".join(f"{t:.0f}s {v:.3f}" for t, _s, v in c["curve"]), flush=True)
    print()
    print("| contender | wall s | tokens/s | x baseline tokens/s | final val loss | time to (a)'s loss | loss at (a)'s wall time "
          "| (a)'s loss in <= half (a)'s wall |")
    print("|---|---|---|---|---|---|---|---|")
    base_wall, base_tps = a["wall"], a["tokens_per_s"]
    for name, r in rows:
        ttt = r.get("time_to_target")
        reach = "" if r is a else (f"{ttt:.1f} s ({ttt / base_wall:.2f}x)" if ttt else "not reached")
        at_wall = "" if r is a else f"{loss_at(r['curve'], base_wall):.4f}"
        # decided by the shared evaluator on the finished run: whole wall time, final loss
        half = "" if r is a else ("yes" if r["wall"] <= 0.5 * base_wall and r["val"] <= a["val"] else "no")
        print(f"| {name} | {r['wall']:.1f} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / base_tps:.2f} | "
              f"{r['val']:.4f} | {reach} | {at_wall} | {half} |")

if __name__ == "__main__":
    main()
