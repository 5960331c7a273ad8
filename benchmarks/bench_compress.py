"""Quantization and pruning: size on disk, decoding speed, perplexity — against the fp32 model, in the same run.

The model: a modern-preset GPT of 10 layers, 512 wide, 8 heads, context 128 (~34M parameters with a 4,096-token
vocabulary), pretrained here for --train-time on a prepared folder (default: the quickstart's data), so its
perplexity means something. It is trained once into --work and reused by later runs.

Quantization table: fp32, int8-weight, int8-dynamic, bf16 — size of model.safetensors, tokens/s decoding 128 new
tokens greedily (no stop ids) after a 16-token prompt at batch 1 and 8 (best of --repeats), perplexity on
--eval-batches x 8 fixed windows of the val split, and its change vs fp32.
Pruning table: magnitude (unstructured) and structured (heads / mlp / both) at a few sparsities: parameters, size,
perplexity before and after --recover-steps of recovery training (structured only), tokens/s.

    flock /tmp/owngpt-heavy.lock .venv/bin/python benchmarks/bench_compress.py [--threads 2] [--train-time 4m]
"""

from __future__ import annotations

import argparse
import math
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from owngpt.checkpoint.format import is_complete, load_model
from owngpt.config import load_run_config
from owngpt.data.loader import TokenBatches
from owngpt.export.prune import prune_run
from owngpt.export.quantize import quantize_run
from owngpt.generate import GenerationConfig, generate_ids
from owngpt.train.pretrain import pretrain

# the base of the figures in docs/benchmarks.md: a tied head, AdamW at one rate (tiny-cpu's own since changed)
MODEL = ["model.preset=modern", "model.n_layer=10", "model.n_embd=512", "model.n_head=8", "model.block_size=128",
         "model.tie_embeddings=true"]
TRAIN = ["train.optimizer=adamw", "train.embed_lr_scale=1", "train.batch_size=8", "train.lr=1e-3", "train.min_lr=1e-4", "train.warmup_steps=20", "train.eval_batches=4",
         "train.device=cpu", "train.dtype=float32", "train.compile=off", "train.tensorboard=false"]


def train_base(data: str, work: Path, train_time: str) -> Path:
    base = work / "base"
    if is_complete(base / "best"):
        return base
    shutil.rmtree(base, ignore_errors=True)
    cfg = load_run_config("tiny-cpu", [*MODEL, *TRAIN, f"train.data={data}", f"train.out_dir={base}",
                                       f"train.max_time={train_time}", "train.max_steps=0", "train.eval_interval=50"])
    pretrain(cfg, quiet=True, echo=print)
    return base


@torch.no_grad()
def perplexity(model, data: str, block: int, batches: int, tok_hash: str) -> float:
    val = TokenBatches(data, "val", 8, block, seed=0, tokenizer_hash=tok_hash)  # the same windows for every model
    losses = []
    for _ in range(batches):
        x, y = val.next_batch()
        losses.append(F.cross_entropy(model(x).float().flatten(0, 1), y.flatten()).item())
    return math.exp(sum(losses) / len(losses))


def with_context(model, length: int):
    """The same weights with a context of at least `length` (RoPE positions are computed, not learned), so a
    16-token prompt plus 128 new tokens fits a model trained at 128: speed does not depend on what positions learned."""
    if model.cfg.block_size >= length:
        return model
    longer = type(model)(replace(model.cfg, block_size=length))
    longer.load_state_dict(model.state_dict())
    return longer.eval()


def tokens_per_second(model, batch: int, new_tokens: int, repeats: int) -> float:
    model = with_context(model, 16 + new_tokens)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(8, model.cfg.vocab_size, (batch, 16), generator=g).tolist()
    cfg = GenerationConfig(max_new_tokens=new_tokens, temperature=0.0)
    generate_ids(model, prompts, GenerationConfig(max_new_tokens=2, temperature=0.0))  # warm-up: first-call costs
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        outs = generate_ids(model, prompts, cfg)
        best = min(best, time.perf_counter() - start)
        assert all(len(o) == new_tokens for o in outs)
    return batch * new_tokens / best


def measure(run: Path, args, tok_hash: str, speed: bool = True) -> dict:
    model, _meta, _ = load_model(run, device="cpu")
    model.float()  # fp32 activations everywhere (this CPU has no native bf16: `--dtype auto` does the same)
    out = {"params": model.num_params(), "mib": (run / "best" / "model.safetensors").stat().st_size / 2**20,
           "ppl": perplexity(model, args.data, model.cfg.block_size, args.eval_batches, tok_hash)}
    if speed:
        out.update(b1=tokens_per_second(model, 1, args.new_tokens, args.repeats),
                   b8=tokens_per_second(model, 8, args.new_tokens, args.repeats))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="runs/quickstart/data")
    p.add_argument("--work", default="/tmp/owngpt-bench-compress")
    p.add_argument("--train-time", default="3m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--recover-steps", type=int, default=30)
    p.add_argument("--recover-lr", type=float, default=1e-4, help="peak lr of recovery training (prune's default)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    base = train_base(args.data, work, args.train_time)
    _, base_meta, tok = load_model(base, device="cpu")
    print(f"\nmachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}, {args.threads} threads; base: {base} (step {base_meta.step}, "
          f"val loss {base_meta.val_loss:.3f})\n")
    ref = measure(base, args, tok.hash)
    print("| model | size MiB | tok/s b1 | tok/s b8 | perplexity | vs fp32 |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| fp32 | {ref['mib']:.1f} | {ref['b1']:.1f} | {ref['b8']:.1f} | {ref['ppl']:.3f} | — |")
    for method in ("int8-weight", "int8-dynamic", "bf16"):
        out = work / f"q-{method}"
        shutil.rmtree(out, ignore_errors=True)
        quantize_run(base, out, method=method)
        r = measure(out, args, tok.hash)
        print(f"| {method} | {r['mib']:.1f} ({r['mib'] / ref['mib']:.2f}x) | {r['b1']:.1f} ({r['b1'] / ref['b1']:.2f}x) "
              f"| {r['b8']:.1f} ({r['b8'] / ref['b8']:.2f}x) | {r['ppl']:.3f} | {100 * (r['ppl'] / ref['ppl'] - 1):+.2f}% |",
              flush=True)
    print("\n| pruning | sparsity | params M | size MiB | ppl pruned | ppl recovered | tok/s b1 | tok/s b8 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| none | 0 | {ref['params'] / 1e6:.2f} | {ref['mib']:.1f} | {ref['ppl']:.3f} | — | {ref['b1']:.1f} | {ref['b8']:.1f} |")
    cases = [(None, 0.5), (None, 0.8), ("heads", 0.5), ("mlp", 0.5), ("both", 0.25), ("both", 0.5)]
    for structure, sparsity in cases:
        out = work / f"p-{structure or 'magnitude'}-{sparsity}"
        shutil.rmtree(out, ignore_errors=True)
        steps = args.recover_steps if structure else 0
        # the base's settings but its learning rates: recovery runs at --recover-lr (TRAIN's lr would override it)
        same = [o for o in TRAIN if not o.startswith(("train.lr=", "train.min_lr=", "train.warmup_steps="))]
        prune_run(base, out, sparsity, structure=structure, data=args.data if structure else None,
                  recover_steps=steps, recover_lr=args.recover_lr,
                  overrides=[*same, f"train.eval_interval={max(1, steps)}"])
        pruned = measure(out / "pruned" if steps else out, args, tok.hash)
        recovered = measure(out, args, tok.hash, speed=False)["ppl"] if steps else None
        print(f"| {structure or 'magnitude'} | {sparsity} | {pruned['params'] / 1e6:.2f} | {pruned['mib']:.1f} "
              f"| {pruned['ppl']:.3f} | {f'{recovered:.3f} ({steps} steps)' if recovered else 'n/a'} "
              f"| {pruned['b1']:.1f} | {pruned['b8']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
