"""fp32 against bf16 autocast for CPU training on this machine, at the tiny-cpu recipe's shape on character data
(context 128, batch 8, a 65-symbol vocabulary, as issue 15 measured it) and at the quickstart's (context 256,
4,096 tokens, batch 8): training tokens/s of full steps (forward, loss, backward, AdamW; the budget planner's own
probe), the two dtypes interleaved over --rounds rounds; and what `train.dtype: auto` chooses here and why.

    python benchmarks/bench_dtype.py [--rounds 3] [--steps 8] [--threads 2]

bf16 pays only where the CPU multiplies bf16 natively (avx512_bf16, AMX); elsewhere it is emulated, and auto keeps fp32.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import cpu_description  # noqa: E402

from owngpt.config import load_run_config  # noqa: E402
from owngpt.runtime import autocast, dtype_reason  # noqa: E402
from owngpt.train.budget import training_tokens_per_second  # noqa: E402

SHAPES = {
    "tiny-cpu, characters (context 128, vocab 65)": ["model.vocab_size=65"],
    "quickstart (context 256, vocab 4096)": ["model.block_size=256", "model.vocab_size=4096"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per measurement (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    cpu = torch.device("cpu")
    _, auto = autocast(cpu, "auto")
    print(f"{datetime.date.today()}, {cpu_description()}; torch {torch.__version__}, {args.threads} threads; "
          f"train.dtype auto here: {dtype_reason(cpu, 'auto', auto)}\n")
    print("| shape | fp32 tok/s | bf16 tok/s | bf16 / fp32 | rounds (fp32 / bf16) |")
    print("|---|---|---|---|---|")
    for name, overrides in SHAPES.items():
        rates: dict[str, list[float]] = {"float32": [], "bfloat16": []}
        for _ in range(args.rounds):
            for dtype in rates:
                cfg = load_run_config("tiny-cpu", [*overrides, "train.device=cpu", f"train.dtype={dtype}",
                                                   f"train.threads={args.threads}", "train.compile=off",
                                                   "train.optimizer=adamw"])  # the dtype alone changes
                rates[dtype].append(training_tokens_per_second(cfg, steps=args.steps))
        fp32, bf16 = statistics.median(rates["float32"]), statistics.median(rates["bfloat16"])
        runs = " / ".join(", ".join(f"{r:,.0f}" for r in v) for v in rates.values())
        print(f"| {name} | {fp32:,.0f} | {bf16:,.0f} | {bf16 / fp32:.2f}× | {runs} |", flush=True)


if __name__ == "__main__":
    main()
