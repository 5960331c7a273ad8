"""Pretraining recipes at the quickstart's shape, in equal wall time: which reaches the lower validation loss?

Each contender is the quickstart's pretraining stage (`owngpt.pipeline.pretrain_stage`: tiny-cpu at context 256 on
the quickstart's prepared English data) with its own overrides, run for the same wall-clock budget in its own
folder, one after the other. The row reports the steps and tokens the budget bought and fit()'s best validation
loss (the same validation batches for every contender: one seed).

    python benchmarks/bench_recipes.py --time 4m                      # AdamW against tiny-cpu's Muon (5e-3)
    python benchmarks/bench_recipes.py --time 4m --contender muon-1e-2=train.muon_lr=1e-2
    python benchmarks/bench_recipes.py --data runs/quickstart/data    # reuse a quickstart's prepared data

Runs are sequential, so a noisy machine shows up as differences in tokens/s between rows: read the loss beside
the steps it came from.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import cpu_description  # noqa: E402

DEFAULT_CONTENDERS = ["adamw=train.optimizer=adamw", "tiny-cpu="]


def main() -> None:
    from owngpt.data.prepare import PrepareConfig, prepare
    from owngpt.pipeline import CORPORA, pretrain_stage

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", default="4m", help="wall-clock budget of each contender")
    ap.add_argument("--out", default="runs/bench-recipes")
    ap.add_argument("--data", default="", help="a quickstart's prepared data folder to reuse (skips preparing)")
    ap.add_argument("--contender", action="append", default=[],
                    help="NAME=override[,override...] (empty: tiny-cpu as shipped); default: "
                         + " ".join(DEFAULT_CONTENDERS))
    args = ap.parse_args()
    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if not args.data and not (data / "manifest.json").exists():
        prepare(CORPORA["en"]["pretrain"], data, PrepareConfig(vocab_size=4096, conversations_as_text=True),
                progress=False)
    print(f"{cpu_description()}; {args.time} per contender, data {data}", flush=True)
    rows = []
    for spec in args.contender or DEFAULT_CONTENDERS:
        name, _, settings = spec.partition("=")
        overrides = [s for s in settings.split(",") if s]
        run_dir = out / name
        shutil.rmtree(run_dir, ignore_errors=True)  # each contender starts afresh: no resume
        start = time.perf_counter()
        r = pretrain_stage(data, run_dir, budget=args.time, overrides=overrides, quiet=True)
        wall = time.perf_counter() - start
        rows.append((name, " ".join(overrides) or "(as shipped)", r, wall))
        print(f"{name}: {r['steps']:,} steps, val {r['best_val_loss']:.4f}, {wall:.0f} s", flush=True)
    print()
    print("| contender | overrides | steps | tokens | tokens/s | best val loss |")
    print("|---|---|---:|---:|---:|---:|")
    for name, overrides, r, wall in rows:
        print(f"| {name} | {overrides} | {r['steps']:,} | {r['tokens'] / 1e6:.2f}M | {r['tokens'] / wall:,.0f} | "
              f"{r['best_val_loss']:.4f} |")


if __name__ == "__main__":
    main()
