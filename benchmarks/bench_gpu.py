"""GPU training throughput and MFU at GPT-2 124M: owngpt's fit() against nanoGPT's model and loop on the same GPU.

    python benchmarks/bench_gpu.py                    # needs a CUDA GPU; ~4 minutes on an H100, most of it compiling
    python benchmarks/bench_gpu.py --rows ours,nanogpt --steps 60
    python benchmarks/bench_gpu.py --smoke            # a 2-layer, 128-wide dry run on the CPU: checks the script only

First a few checks that the GPU path computes what the CPU path does (cached == uncached greedy generation,
bf16 logits close to fp32, attention accepted by the flash kernel), then the rows, all on random token ids
(speed does not depend on the text), context 1024, vocabulary 50257 (padded to 50304), bf16 autocast,
torch.compile, fused AdamW, micro-batch --batch x --accum accumulation steps per optimizer step:

  nanogpt       nanoGPT's model.py + train.py GPU path (benchmarks/nanogpt_ref.py): the loss inside the compiled
                forward, one loss.item() per 10 steps
  ours          fit() with the gpt2-124m preset (GPT-2's exact maths: biases, tanh GELU), data through TokenBatches
  ours-modern   fit() with the modern preset at the same size (RoPE, RMSNorm, SwiGLU, no biases)
  ours-b32      fit(), gpt2-124m, twice the micro-batch and half the accumulation (same tokens per step)
  ours:BxA      fit(), gpt2-124m, micro-batch B, A accumulation steps (ours-modern:BxA likewise)

tokens/s is the median over 10-step windows after the first 20 steps (compiling and warm-up left out), the
statistic fit() logs. MFU = tokens/s x training FLOPs per token (6N + 12·L·H·Q·T, PaLM's count, as nanoGPT)
over the GPU's datasheet dense bf16 peak (owngpt.train.metrics.peak_flops).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import write_prepared  # noqa: E402
from nanogpt_ref import RefConfig, train_reference_cuda  # noqa: E402

from owngpt.config import load_run_config  # noqa: E402
from owngpt.data.loader import TokenBatches  # noqa: E402
from owngpt.generate import GenerationConfig, generate_ids  # noqa: E402
from owngpt.model.gpt import GPT  # noqa: E402
from owngpt.train.loop import fit  # noqa: E402
from owngpt.train.metrics import peak_flops, read_metrics  # noqa: E402
from owngpt.train.pretrain import padded_vocab  # noqa: E402

VOCAB = 50257
SKIP_STEPS = 20  # steps left out of the statistic: compiling, allocator and autotuning warm-up


def checks(device: torch.device) -> list[str]:
    """Short correctness checks of the CUDA path; raises on a failure."""
    out = []
    torch.manual_seed(0)
    small = load_run_config("baby-gpt", []).model
    model = GPT(dataclasses.replace(small, vocab_size=512, block_size=128)).to(device).eval()
    prompts = torch.randint(0, 512, (3, 12)).tolist()
    cfg = GenerationConfig(max_new_tokens=40, temperature=0.0)
    cached, uncached = generate_ids(model, prompts, cfg, use_cache=True), generate_ids(model, prompts, cfg, use_cache=False)
    assert cached == uncached, "cached and uncached greedy generation differ on CUDA"
    out.append("cached == uncached greedy generation (fp32, batch 3, 40 tokens)")

    big = load_run_config("gpt2-124m", []).model
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(big, vocab_size=padded_vocab(VOCAB), n_layer=2)).to(device)
    x = torch.randint(0, VOCAB, (2, 1024), device=device)
    with torch.no_grad():
        ref = model(x).double()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            low = model(x).double()
    rel = float((low - ref).norm() / ref.norm())
    assert rel < 2e-2, f"bf16 logits are {rel:.2e} away from fp32"
    out.append(f"bf16 autocast logits vs fp32: relative error {rel:.1e}")

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), torch.autocast(device.type, dtype=torch.bfloat16):
        model(x).float().logsumexp(-1).mean().backward()  # raises if the flash kernel cannot take our attention
    out.append("training forward + backward runs with only the flash-attention SDPA backend allowed")
    return out


def steady(windows: list[tuple[int, float]]) -> float:
    """Median tokens/s of the windows that end after SKIP_STEPS; windows: (end step, tokens/s)."""
    rates = [tps for step, tps in windows if step > SKIP_STEPS]
    return statistics.median(rates) if rates else float("nan")


def model_overrides(args) -> list[str]:
    return ["model.n_layer=2", "model.n_head=2", "model.n_embd=128", "model.block_size=128"] if args.smoke else []


def run_nanogpt(data_dir: Path, args) -> dict:
    m = load_run_config("gpt2-124m", model_overrides(args)).model
    cfg = RefConfig(vocab_size=padded_vocab(VOCAB), block_size=m.block_size, n_layer=m.n_layer, n_head=m.n_head,
                    n_embd=m.n_embd)
    r = train_reference_cuda(data_dir / "train.bin", cfg, args.batch, args.accum, args.steps, device=args.device)
    k = r["log_interval"]
    windows = [((i + 1) * k, k * r["tokens_per_step"] / s) for i, s in enumerate(r["windows"])]
    return {"tokens_per_s": steady(windows), "batch": f"{args.batch} x {args.accum}"}


def run_ours(data_dir: Path, run_dir: Path, args, overrides: list[str], batch: int, accum: int) -> dict:
    run_cfg = load_run_config("gpt2-124m", model_overrides(args) + overrides + [
        f"train.batch_size={batch}", f"train.grad_accum={accum}", f"train.max_steps={args.steps}", "train.log_interval=10",
        "train.tensorboard=false", f"train.device={args.device}", "train.save_interval=0"])
    model_cfg = dataclasses.replace(run_cfg.model, vocab_size=padded_vocab(VOCAB))
    torch.manual_seed(1337)
    model = GPT(model_cfg).to(args.device)
    T = model_cfg.block_size
    train = TokenBatches(data_dir, "train", batch, T, seed=0, device=args.device)
    result = fit(model, train, None, run_cfg.train, run_dir, run_config={"bench": "gpu"}, quiet=True)
    windows = [(r["step"], r["tokens_per_s"]) for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
    return {"tokens_per_s": steady(windows), "batch": f"{batch} x {accum}", "flops_per_token": model.flops_per_token(),
            "steps": result.steps, "loss": result.last_train_loss}


def kernel_kind(name: str) -> str:
    n = name.lower()
    if "flash" in n or "fmha" in n or "attention" in n:
        return "attention"
    if any(k in n for k in ("gemm", "xmma", "cutlass", "nvjet", "matmul", "sm90", "sm80")):
        return "matmul"
    if "adam" in n or "foreach" in n or "norm" in n and "multi_tensor" in n:
        return "optimizer / clip"
    if n.startswith("triton"):
        return "fused element-wise (triton)"
    if "memcpy" in n or "memset" in n:
        return "copies"
    return "other"


def profile_ours(data_dir: Path, run_dir: Path, args, overrides: list[str], batch: int, accum: int, steps: int = 3) -> str:
    """Where a fit() step's GPU time goes: kernels grouped by kind, and busy time over wall time."""
    from torch.profiler import ProfilerActivity, profile

    from owngpt.train.loop import _Trainer

    run_cfg = load_run_config("gpt2-124m", model_overrides(args) + overrides + [
        f"train.batch_size={batch}", f"train.grad_accum={accum}", "train.tensorboard=false", f"train.device={args.device}"])
    torch.manual_seed(1337)
    model = GPT(dataclasses.replace(run_cfg.model, vocab_size=padded_vocab(VOCAB))).to(args.device)
    train = TokenBatches(data_dir, "train", batch, run_cfg.model.block_size, seed=0, device=args.device)
    trainer = _Trainer(model, train, None, run_cfg.train, run_dir, {}, None, None, True)
    for _ in range(12):  # compile and warm up
        trainer.train_step(1e-4).read()
    if args.device == "cuda":
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        values = [trainer.train_step(1e-4) for _ in range(steps)]
        for v in values:
            v.read()
        if args.device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kinds: dict[str, float] = {}
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0)
        if t > 0 and (e.device_type == torch.autograd.DeviceType.CUDA or args.device == "cpu"):
            kinds[kernel_kind(e.key)] = kinds.get(kernel_kind(e.key), 0.0) + t / 1e6
    busy = sum(kinds.values())
    lines = [f"profile {' '.join(overrides) or 'gpt2'} {batch} x {accum}: {steps} steps, {wall:.3f} s wall, GPU busy "
             f"{busy:.3f} s ({100 * busy / max(wall, 1e-9):.0f}%)"]
    lines += [f"  {k}: {t:.3f} s ({100 * t / busy:.0f}%)" for k, t in sorted(kinds.items(), key=lambda kv: -kv[1])]
    try:
        top = prof.key_averages().table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=70)
    except Exception:  # older torch names the column after CUDA
        top = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=18, max_name_column_width=70)
    return "\n".join(lines) + "\n" + top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="ours,nanogpt,ours-modern,ours-b32")
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per row")
    ap.add_argument("--batch", type=int, default=16, help="micro-batch (sequences of 1024 tokens)")
    ap.add_argument("--accum", type=int, default=4, help="micro-batches per optimizer step")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    ap.add_argument("--no-checks", action="store_true")
    ap.add_argument("--profile", default="", help="after the rows, profile fit() steps of these (comma list: gpt2, modern)")
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU, to check the script without a GPU")
    args = ap.parse_args()
    args.device = "cpu" if args.smoke else "cuda"
    if args.smoke:
        args.steps, args.batch, args.accum, args.no_checks = 30, 4, 2, True
        args.rows = args.rows.replace("ours-b32", "").strip(",").replace(",,", ",")
    elif not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (or --smoke for a CPU dry run)")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else "CPU (smoke run)"
    peak = peak_flops(device, torch.bfloat16)
    print(f"torch {torch.__version__}, {name}, bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else f"{name}: peak unknown", flush=True)
    if not args.no_checks:
        for line in checks(device):
            print(f"check ok: {line}", flush=True)
    flops_per_token = GPT(dataclasses.replace(load_run_config("gpt2-124m", model_overrides(args)).model,
                                              vocab_size=padded_vocab(VOCAB))).flops_per_token()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids = np.random.default_rng(0).integers(0, VOCAB, size=20_000_000, dtype=np.uint16)
        data_dir = write_prepared(tmp / "data", ids, ids[:100_000], VOCAB)
        for row in args.rows.split(","):
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            if row == "nanogpt":
                r = run_nanogpt(data_dir, args)
                r["flops_per_token"] = flops_per_token
            elif row == "ours":
                r = run_ours(data_dir, tmp / row, args, [], args.batch, args.accum)
            elif row == "ours-modern":
                r = run_ours(data_dir, tmp / row, args, ["model.preset=modern"], args.batch, args.accum)
            elif row == "ours-b32":
                r = run_ours(data_dir, tmp / row, args, [], 2 * args.batch, max(1, args.accum // 2))
            elif row.startswith(("ours:", "ours-modern:")):  # e.g. ours:64x1: another micro-batch x accumulation
                b, a = (int(n) for n in row.split(":")[1].split("x"))
                r = run_ours(data_dir, tmp / row.replace(":", "-"), args,
                             ["model.preset=modern"] if row.startswith("ours-modern") else [], b, a)
            else:
                sys.exit(f"unknown row {row!r}")
            r.update(row=row, seconds=time.perf_counter() - t0,
                     peak_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"))
            r["mfu"] = r["tokens_per_s"] * r["flops_per_token"] / peak if peak else float("nan")
            rows.append(r)
            print(f"{row}: {r['tokens_per_s']:,.0f} tokens/s, MFU {100 * r['mfu']:.1f}%, peak {r['peak_gib']:.1f} GiB, "
                  f"{r['seconds']:.0f} s with compiling", flush=True)
        for which in filter(None, args.profile.split(",")):
            overrides = [] if which == "gpt2" else [f"model.preset={which}"]
            print(profile_ours(data_dir, tmp / f"profile-{which}", args, overrides, 2 * args.batch,
                               max(1, args.accum // 2)), flush=True)
    base = next((r["tokens_per_s"] for r in rows if r["row"] == "nanogpt"), None)
    print(f"\n{name}, {args.steps} steps per row, context {load_run_config('gpt2-124m', model_overrides(args)).model.block_size}, "
          "bf16, torch.compile")
    print("| row | micro-batch x accum | tokens/s | x nanoGPT | MFU | peak GPU memory |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['tokens_per_s'] / base:.2f}" if base else ""
        print(f"| {r['row']} | {r['batch']} | {r['tokens_per_s']:,.0f} | {ratio} | {100 * r['mfu']:.1f}% | {r['peak_gib']:.1f} GiB |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
