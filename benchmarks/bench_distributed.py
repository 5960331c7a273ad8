"""One process against two (torchrun, gloo) on this machine's CPU cores: the same pretraining at the same global
batch, for correctness (the losses must agree) and speed (tokens/s; on 2 cores expect less than 2x).

Shape: the quickstart's pretraining (its config.yaml: a 3-layer modern GPT, context 256), 16 sequences per step:
one process runs grad_accum=2 micro-batches of 8 with 2 threads, each of two processes one micro-batch of 8 with
1 thread. The settings alternate run by run, so drift of the machine's speed hits both alike.

    python benchmarks/bench_distributed.py [--quickstart runs/quickstart] [--steps 200] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import cpu_description  # noqa: E402


def command(qs: Path, out: Path, steps: int, nproc: int) -> tuple[list[str], dict[str, str]]:
    verb = ["-m", "owngpt", "pretrain", "--config", str(qs / "pretrain" / "config.yaml"), "--data", str(qs / "data"),
            "--out", str(out), "--steps", str(steps), "--resume", "none", "--quiet",
            "--set", "train.max_time=0", "--set", "train.batch_size=8", "--set", "train.grad_accum=2",
            "--set", "train.eval_interval=0", "--set", "train.eval_batches=20", "--set", "train.log_interval=10",
            "--set", "train.tensorboard=false", "--set", "train.device=cpu", "--set", "train.dtype=float32"]
    env = dict(os.environ)
    if nproc == 1:
        env["OMP_NUM_THREADS"] = "2"
        return [sys.executable, *verb], env
    env["OMP_NUM_THREADS"] = "1"
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *verb], env


def train_records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] in ("train", "val")]


def one_run(qs: Path, tmp: Path, steps: int, nproc: int, index: int) -> dict:
    out = tmp / f"p{nproc}-{index}"
    cmd, env = command(qs, out, steps, nproc)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    records = train_records(out)
    train = {r["step"]: r["loss"] for r in records if r["kind"] == "train"}
    # tokens/s over the logged steps after the first 10 (warm-up of the allocator and the thread pools)
    timed = [r for r in records if r["kind"] == "train" and r["step"] > 10]
    tps = (timed[-1]["tokens"] - timed[0]["tokens"]) / (timed[-1]["elapsed"] - timed[0]["elapsed"])
    val = [r["loss"] for r in records if r["kind"] == "val"]
    return {"train": train, "tps": tps, "wall": wall, "val": val[-1] if val else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quickstart", default="runs/quickstart", help="a finished `owngpt quickstart` folder")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--runs", type=int, default=2, help="runs of each setting, alternating")
    args = ap.parse_args()
    qs = Path(args.quickstart)
    results: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for nproc in ((1, 2) if i % 2 == 0 else (2, 1)):
                results[nproc].append(one_run(qs, Path(tmp), args.steps, nproc, i))
                print(f"run {i + 1}, {nproc} process{'es' if nproc > 1 else ''}: "
                      f"{results[nproc][-1]['tps']:,.0f} tokens/s", file=sys.stderr)
    one, two = results[1], results[2]
    steps = sorted(one[0]["train"])
    diffs = [abs(one[0]["train"][s] - two[0]["train"][s]) for s in steps]
    early = [d for s, d in zip(steps, diffs) if s <= 20]
    tps1, tps2 = statistics.median(r["tps"] for r in one), statistics.median(r["tps"] for r in two)
    print(f"\n{cpu_description()}; {args.steps} steps of 16 x 256 tokens; {args.runs} runs each\n")
    print("| | 1 process, 2 threads | 2 processes (gloo), 1 thread each | ratio |")
    print("|---|---|---|---|")
    print(f"| training tokens/s (median) | {tps1:,.0f} | {tps2:,.0f} | {tps2 / tps1:.2f}x |")
    print(f"| wall s incl. start-up (median) | {statistics.median(r['wall'] for r in one):.1f} "
          f"| {statistics.median(r['wall'] for r in two):.1f} | |")
    print(f"| train loss at step {steps[-1]} | {one[0]['train'][steps[-1]]:.4f} | {two[0]['train'][steps[-1]]:.4f} | |")
    print(f"| final val loss | {one[0]['val']:.4f} | {two[0]['val']:.4f} | |")
    print(f"\nlargest |train loss difference|: {max(early):.2e} over steps 1-20, {max(diffs):.2e} over all "
          f"{len(steps)} logged steps (fp32)")


if __name__ == "__main__":
    main()
