"""Compiled one-row decoding (`--compile`) against the eager step on a trained checkpoint: greedy tokens/s at batch 1.

The checkpoint is loaded twice in fp32 on the CPU, once with `compile=True` (its compile time printed); both then
decode the same prompt greedily, alternating, `--rounds` times; the table gives the median tokens/s of each and
whether their tokens are the same.

    python benchmarks/bench_compiled.py runs/quickstart/chat [--new-tokens 128] [--rounds 5] [--threads 2]

For the GPT-2-124M-shaped comparison with llama.cpp and transformers: bench_decode.py --owngpt-dtypes fp32+compiled.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch

from bench_serve import cpu_description


def main() -> None:
    import owngpt
    from owngpt.generate import GenerationConfig, generate_ids

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--prompt", default="Hi! What do you like to do on weekends?")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    eager = owngpt.load(args.checkpoint, device="cpu", dtype="float32")
    start = time.perf_counter()
    compiled = owngpt.load(args.checkpoint, device="cpu", dtype="float32", compile=True)
    compile_s = time.perf_counter() - start
    print(f"{datetime.date.today()}, {cpu_description()}; torch {torch.__version__}, {args.threads} threads")
    print(f"model: {eager.model.describe()}; load with compile=True: {compile_s:.1f} s\n")
    prompt = eager.tokenizer.encode(args.prompt)
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, temperature=0.0)
    tps: dict[str, list[float]] = {"eager": [], "compiled": []}
    outs = {}
    for _ in range(args.rounds):
        for name, gen in (("eager", eager), ("compiled", compiled)):
            start = time.perf_counter()
            outs[name] = generate_ids(gen.model, [prompt], cfg)
            tps[name].append(len(outs[name][0]) / (time.perf_counter() - start))
    base = statistics.median(tps["eager"])
    print("| decoding | median tok/s | vs eager | same greedy tokens |")
    print("|---|---:|---:|---|")
    for name, values in tps.items():
        print(f"| {name} | {statistics.median(values):.1f} | {statistics.median(values) / base:.2f}x | "
              f"{'yes' if outs[name] == outs['eager'] else 'no'} |")


if __name__ == "__main__":
    main()
