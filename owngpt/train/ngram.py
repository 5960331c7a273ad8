"""Counting the Kneser-Ney n-gram baseline from a prepared folder into a run folder that chat, generate, evaluate
and serve load like any other.

It lives with training, not with the model (owngpt/model/ngram.py holds the model and the estimator), because it
is a training recipe: it reads the same data `owngpt pretrain` and `owngpt sft` train on — the `train` split's
token shards, plus the training conversations built and rendered exactly as `sft` renders them (persona mixed
in) — and writes what a training run writes: a checkpoint (best/ and checkpoints/), config.yaml, metrics.jsonl
and summary.md. Its validation loss is sft's: mean loss per assistant token of the held-out conversations,
packed into rows as `sft` packs them (one pass over all of them).

Not handled: counting data larger than memory (the whole token stream and its n-gram keys are held at once;
see benchmarks/bench_ngram.py for the memory it takes) and resuming an interrupted count (it starts again).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from owngpt.checkpoint.format import save_checkpoint
from owngpt.checkpoint.meta import make_meta
from owngpt.data.loader import PackedBatches
from owngpt.data.shards import read_manifest, read_shard
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text, output_dir
from owngpt.model.ngram import NGram, NGramConfig, estimate
from owngpt.model.registry import config_dict
from owngpt.train.metrics import MetricsLogger
from owngpt.train.sft import SFTConfig, build_conversations, render_all


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far, in MB (Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def document_stream(data_dir: Path, tok, manifest: dict[str, Any], windows: list[tuple[list[int], list[int]]]) -> np.ndarray:
    """The train split's shards (documents, each followed by EOT) then every rendered conversation window, each
    followed by EOT: one int64 stream in which EOT separates documents."""
    parts = [np.asarray(read_shard(data_dir, shard, manifest["dtype"]), dtype=np.int64)
             for shard in manifest["splits"].get("train", {}).get("shards", [])]
    if windows:
        lengths = np.array([len(ids) + 1 for ids, _ in windows], dtype=np.int64)
        flat = np.full(int(lengths.sum()), tok.eot_id, dtype=np.int64)  # EOT after each window
        inside = np.ones(len(flat), dtype=bool)
        inside[np.cumsum(lengths) - 1] = False
        flat[inside] = np.fromiter((t for ids, _ in windows for t in ids), dtype=np.int64, count=int(inside.sum()))
        parts.append(flat)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def packed_val_loss(model: NGram, windows: list[tuple[list[int], list[int]]], pad_id: int,
                    batch_size: int = 16) -> float | None:
    """Mean loss per assistant token of held-out conversation windows packed as `sft` packs its validation rows
    (the number `sft` reports as val loss), over one pass; None when there is nothing to score."""
    if not windows:
        return None
    try:
        batches = PackedBatches(windows, model.cfg.block_size, batch_size, pad_id, shuffle=False)
    except OwnGPTError:  # no held-out reply fits the context
        return None
    total, count = 0.0, 0
    for _ in range(batches.batches_per_pass):
        x, y = batches.next_batch()
        total += float(F.cross_entropy(model(x).transpose(1, 2), y, ignore_index=-1, reduction="sum"))
        count += int((y != -1).sum())
    return total / count if count else None


def train_ngram(data_dir: str | Path, out_dir: str | Path, cfg: NGramConfig, *, persona: str = "",
                echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Count an order-`cfg.order` modified Kneser-Ney model on the prepared folder `data_dir` (its train split's
    documents and its training conversations, rendered in the chat format, persona identity chats mixed in) and
    write it as a run into `out_dir`. cfg.vocab_size, eot_id and sizes are taken from the folder's tokenizer and
    the counts. Returns the report: tokens counted, n-grams and discounts per order, val loss, seconds, peak MB."""
    from owngpt.tokenizer import Tokenizer

    start = time.perf_counter()
    replace(cfg, vocab_size=1, eot_id=0, sizes=[]).check()  # a bad order or block_size: before any work
    data_dir = Path(data_dir)
    run_dir = output_dir(out_dir, create=False)
    manifest = read_manifest(data_dir)
    if not (data_dir / "tokenizer").is_dir():
        raise OwnGPTError(f"{data_dir}/tokenizer not found: run `owngpt prepare ... --out {data_dir}` with a tokenizer")
    tok = Tokenizer.load(data_dir / "tokenizer")
    if manifest.get("tokenizer_hash") not in (None, tok.hash):
        raise OwnGPTError(f"{data_dir}/manifest.json: the shards were tokenized with another tokenizer than "
                          f"{data_dir}/tokenizer; re-run `owngpt prepare`")
    cfg = replace(cfg, vocab_size=tok.vocab_size, eot_id=tok.eot_id, sizes=[]).check()

    sft_cfg = SFTConfig(base="", data=[str(data_dir)], persona=persona)
    has_chats = (manifest.get("conversations") or {}).get("train", {}).get("conversations", 0) > 0
    train, val, conv_report = build_conversations(sft_cfg) if has_chats else ([], [], {})
    if not has_chats:
        echo(f"{data_dir} holds no training conversations: counting its documents only"
             + (" (the persona's identity chats are mixed into conversations: none here)" if persona else ""))
    windows = render_all(tok, train, cfg.block_size + 1)
    stream = document_stream(data_dir, tok, manifest, windows)
    echo(f"counting order-{cfg.order} n-grams over {len(stream):,} tokens ({len(windows):,} conversation windows)")
    model, counted = estimate(stream, cfg, echo)
    val_loss = packed_val_loss(model, render_all(tok, val, cfg.block_size + 1), tok.pad_id)
    seconds = time.perf_counter() - start

    report: dict[str, Any] = {
        "order": cfg.order, "tokens": int(len(stream)), "conversation_windows": len(windows),
        "document_tokens": int(manifest["splits"].get("train", {}).get("tokens", 0)), **counted,
        "val_loss": val_loss, "val_conversations": len(val), "seconds": round(seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    chat_defaults = {"system_prompt": conv_report.get("system_prompt"), "reverse": False}
    run_config = {"ngram": asdict(model.cfg), "sft": asdict(sft_cfg), "data": str(data_dir), "chat": chat_defaults,
                  "report": {k: v for k, v in conv_report.items() if k != "data"}}
    output_dir(run_dir)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(json.loads(json.dumps(run_config, default=str)),
                                                             sort_keys=False, allow_unicode=True))
    meta = make_meta(arch=NGram.arch, model_config=config_dict(model), tokenizer=tok, run_config=run_config,
                     tokens=len(stream), val_loss=val_loss, best_val_loss=val_loss)
    save_checkpoint(run_dir, 0, model.state_dict(), meta, None, tokenizer=tok, best=True, keep_last=1)
    logger = MetricsLogger(run_dir, tensorboard=False)
    if val_loss is not None:
        logger.log(0, "val", loss=val_loss, best=val_loss, tokens=len(stream), elapsed=seconds)
    logger.close()
    atomic_write_text(run_dir / "ngram_report.json", json.dumps(report, indent=2))
    write_ngram_summary(run_dir, report)
    echo(f"wrote {run_dir}/best: {sum(model.cfg.sizes):,} n-grams, val loss "
         + (f"{val_loss:.4f}" if val_loss is not None else "not evaluated (no held-out conversations)")
         + f", {seconds:.1f}s, peak {report['peak_rss_mb']:,.0f} MB")
    return report


def write_ngram_summary(run_dir: Path, report: dict[str, Any]) -> Path:
    """RUN/summary.md for a counted n-gram: what a person wants to know first, then the per-order tables."""
    val = report.get("val_loss")
    lines = [
        f"# N-gram run: {run_dir.name}",
        "",
        "| | |",
        "|---|---|",
        f"| model | interpolated modified Kneser-Ney, order {report['order']} |",
        f"| tokens counted | {report['tokens']:,} ({report['conversation_windows']:,} conversation windows) |",
        f"| wall time | {report['seconds']:,.1f} s |",
        f"| peak memory | {report['peak_rss_mb']:,.0f} MB resident |",
        f"| val loss | {val:.4f} (assistant tokens of {report['val_conversations']:,} held-out conversations) |"
        if val is not None else "| val loss | not evaluated (no held-out conversations) |",
        "",
        "| order | distinct n-grams | D1 | D2 | D3+ |",
        "|---|---|---|---|---|",
        *(f"| {j} | {report['ngrams'][j]:,} | " + " | ".join(f"{d:.4f}" for d in report["discounts"][j])
          + (" (fallback used)" if j in report.get("discount_fallback", {}) else "") + " |"
          for j in report["ngrams"]),
        "",
        "Files: `config.yaml` (settings), `ngram_report.json`, `metrics.jsonl`, `best/` and `checkpoints/` "
        "(load with `owngpt.checkpoint.format.load_model`; chat, generate, evaluate and serve take the run folder).",
        "",
    ]
    out = run_dir / "summary.md"
    atomic_write_text(out, "\n".join(lines))
    return out
