"""Muon's optimizer step on a CPU: Newton-Schulz on each matrix itself against its Gram-matrix form.

owngpt runs Muon's orthogonalisation in fp32 on CPUs without native bf16 (owngpt/train/optim.py); for a matrix with
one side over 1.5x the other it iterates on the small Gram matrix instead (`_gram_newton_schulz`: the same result up
to fp32 rounding, fewer multiply-adds). This times a whole Muon step (torch.optim.Muon with owngpt's iteration) on a
recipe's hidden matrices with either form, alternating rounds in one process, beside AdamW's step on the rest, and
the iteration alone per matrix shape.

    python benchmarks/bench_muon.py                         # tiny-cpu at the quickstart's shape
    python benchmarks/bench_muon.py --recipe small --rounds 9
    python benchmarks/bench_muon.py --probe                 # also: the quickstart planner's probe, Muon vs AdamW

--probe times whole training steps as the quickstart's planner does (owngpt/train/budget.py,
training_tokens_per_second: 25 steps a round, random tokens), Muon against AdamW alternated: their ratio is the
planner's MUON_STEP_RATE.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time

import torch

from bench_serve import cpu_description

from owngpt.config import load_run_config
from owngpt.model.registry import make_model
from owngpt.runtime import cpu_has_bf16_matmul
from owngpt.train import optim


def per_call_ms(fn, calls: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="tiny-cpu")
    ap.add_argument("--set", action="append", default=["model.block_size=256", "model.vocab_size=4096"],
                    help="overrides (default: the quickstart's context and vocabulary)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported")
    ap.add_argument("--calls", type=int, default=40, help="steps timed per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probe", action="store_true", help="also time the planner's probe steps, Muon against AdamW")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_run_config(args.recipe, args.set + ["train.optimizer=muon"])
    torch.manual_seed(0)
    model = make_model(cfg.model)
    opt = optim.make_optimizer(model, cfg.train)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    matrices = [p for g in opt.muon.param_groups for p in g["params"]]
    shapes = sorted({tuple(p.shape) for p in matrices})
    print(f"{datetime.date.today()}, {cpu_description()}; torch {torch.__version__}, {args.threads} threads")
    print(f"{args.recipe} {' '.join(args.set)}: {len(matrices)} Muon matrices {shapes}\n")

    if cpu_has_bf16_matmul():
        print("note: this CPU has native bf16, where owngpt leaves torch's own bf16 iteration in place; the rows time "
              "owngpt's fp32 forms anyway\n")
    impl = sys.modules["torch.optim._muon"]

    def muon_step() -> None:  # torch.optim.Muon with owngpt's fp32 iteration (what _muon_precision installs)
        original, impl._zeropower_via_newtonschulz = impl._zeropower_via_newtonschulz, optim._orthogonalize_fp32
        try:
            opt.muon.step()
        finally:
            impl._zeropower_via_newtonschulz = original

    gram = optim._gram_newton_schulz
    forms = {"on the matrix": optim._newton_schulz, "Gram form (owngpt)": gram}
    times: dict[str, list[float]] = {name: [] for name in forms}
    try:
        for _ in range(args.rounds):
            for name, iterate in forms.items():
                optim._gram_newton_schulz = iterate  # what _orthogonalize_fp32 calls for the rectangular matrices
                times[name].append(per_call_ms(muon_step, args.calls))
    finally:
        optim._gram_newton_schulz = gram
    adamw = statistics.median(per_call_ms(opt.adamw.step, args.calls) for _ in range(args.rounds))
    base = statistics.median(times["on the matrix"])
    print("| step | median ms | rounds (ms) | vs on the matrix |")
    print("|---|---:|---|---:|")
    for name, ms in times.items():
        print(f"| Muon, Newton-Schulz {name} | {statistics.median(ms):.2f} | "
              f"{', '.join(f'{m:.1f}' for m in ms)} | {base / statistics.median(ms):.2f}x |")
    print(f"| AdamW on the rest (embedding, norms) | {adamw:.2f} | | |")

    coeffs, steps = (3.4445, -4.775, 2.0315), 5
    print("\n| matrix (rows x columns) | count | on the matrix ms | Gram form ms | form owngpt uses |")
    print("|---|---:|---:|---:|---|")
    for shape in shapes:
        x = torch.randn(*shape)
        x = (x.T if x.size(0) > x.size(1) else x) / x.norm()
        direct = statistics.median(per_call_ms(lambda: optim._newton_schulz(x, coeffs, steps), args.calls)
                                   for _ in range(args.rounds))
        via_gram = statistics.median(per_call_ms(lambda: gram(x, coeffs, steps), args.calls)
                                     for _ in range(args.rounds))
        n, m = x.shape
        used = "Gram" if 2 * m > 3 * n else "on the matrix"
        count = sum(tuple(p.shape) == shape for p in matrices)
        print(f"| {shape[0]} x {shape[1]} | {count} | {direct:.3f} | {via_gram:.3f} | {used} |")


    if args.probe:
        probe_ratio(args)


def probe_ratio(args: argparse.Namespace) -> None:
    """The quickstart planner's probe (whole training steps at the recipe's shape), Muon and AdamW alternated."""
    from owngpt.train.budget import MUON_STEP_RATE, training_tokens_per_second

    rates: dict[str, list[float]] = {"muon": [], "adamw": []}
    for _ in range(args.rounds):
        for name in rates:
            cfg = load_run_config(args.recipe, args.set + [f"train.optimizer={name}", "train.device=cpu",
                                                           f"train.threads={args.threads}"])
            rates[name].append(training_tokens_per_second(cfg, steps=25))
    muon, adamw = statistics.median(rates["muon"]), statistics.median(rates["adamw"])
    print("\n| probe (training steps, tokens/s) | median | rounds |")
    print("|---|---:|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    print(f"\nMuon / AdamW: {muon / adamw:.3f} (budget.py's MUON_STEP_RATE: {MUON_STEP_RATE})")


if __name__ == "__main__":
    main()
