"""One training step at a given shape: nanoGPT's model (benchmarks/nanogpt_ref.py) against owngpt's GPT in fp32,
under CPU bf16 autocast, and under bf16 + torch.compile — the same step fit() takes (forward, fp32 cross-entropy,
backward, clip, AdamW), interleaved in one process so that the ratios share the machine's state.

    python benchmarks/bench_step.py                       # baby GPT (gpt2 preset) and tiny-cpu at the quickstart's shapes
    python benchmarks/bench_step.py --no-compile          # skip the compiled contender (~25 s of compiling per shape)

Step-level figures isolate the model from the loop; bench_train.py measures whole runs through fit().
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from nanogpt_ref import RefConfig, RefGPT  # noqa: E402

from owngpt.config import load_run_config  # noqa: E402
from owngpt.model.gpt import GPT  # noqa: E402
from owngpt.runtime import cpu_has_bf16_matmul  # noqa: E402
from owngpt.train.optim import make_optimizer  # noqa: E402

SHAPES = {  # name: (preset, batch, context, vocab of the nanoGPT model, vocab of owngpt's)
    "baby GPT (gpt2 preset, 4 x 128, ctx 64, batch 12)": ("baby-gpt", 12, 64, 91, 128),
    "tiny-cpu at the quickstart's shapes (ctx 256, batch 8, vocab 4096)": ("tiny-cpu", 8, 256, 4096, 4096),
}


def nanogpt_step(preset: str, T: int, vocab: int):
    m = load_run_config(preset, []).model
    model = RefGPT(RefConfig(vocab_size=vocab, block_size=T, n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))

    def step(x, y):
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    return step


def owngpt_step(preset: str, T: int, vocab: int, bf16: bool, compiled: bool):
    cfg = load_run_config(preset, ["train.optimizer=adamw"])  # AdamW on both sides, as nanoGPT
    model = GPT(dataclasses.replace(cfg.model, vocab_size=vocab, block_size=T))
    opt = make_optimizer(model, cfg.train)
    forward = torch.compile(model) if compiled else model
    params = list(model.parameters())

    def step(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the median is reported")
    ap.add_argument("--steps", type=int, default=30, help="steps per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, AMX bf16: {cpu_has_bf16_matmul()}\n")
    print("| shape | nanoGPT fp32 | owngpt fp32 | owngpt bf16 | owngpt bf16 + compile |")
    print("|---|---|---|---|---|")
    for name, (preset, B, T, ref_vocab, vocab) in SHAPES.items():
        torch.manual_seed(0)
        x, y = torch.randint(0, ref_vocab, (B, T)), torch.randint(0, ref_vocab, (B, T))
        steps = {"nanoGPT fp32": nanogpt_step(preset, T, ref_vocab),
                 "owngpt fp32": owngpt_step(preset, T, vocab, False, False),
                 "owngpt bf16": owngpt_step(preset, T, vocab, True, False)}
        if not args.no_compile:
            steps["owngpt bf16 + compile"] = owngpt_step(preset, T, vocab, True, True)
        for step in steps.values():  # warm-up (and compile)
            for _ in range(10):
                step(x, y)
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.rounds):
            for k, step in steps.items():
                t = time.perf_counter()
                for _ in range(args.steps):
                    step(x, y)
                times[k].append((time.perf_counter() - t) / args.steps * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["nanoGPT fp32"]
        cells = [f"{med[k]:.1f} ms ({base / med[k]:.2f}x)" if k in med else "-" for k in
                 ("nanoGPT fp32", "owngpt fp32", "owngpt bf16", "owngpt bf16 + compile")]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
