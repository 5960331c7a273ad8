"""Full fine-tuning vs LoRA on the same base and data: trainable parameters, peak memory, time, val loss.

Each mode runs `owngpt.train.sft.sft()` for the same number of steps in its own process (so peak RSS is that
mode's alone), on the same conversations and persona, with the same batch and seed. The learning rate is each
mode's usual one (LoRA adapters start at zero and take a larger rate); both are printed. Defaults use the base
model and data of `owngpt quickstart`:

    owngpt quickstart --no-chat            # once, for runs/quickstart/{pretrain,data}
    python benchmarks/bench_sft.py [--base runs/quickstart/pretrain --data runs/quickstart/data] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {
    "full": {"lora": False, "lr": 1e-3},  # the quickstart's fine-tuning rate
    "lora": {"lora": True, "lr": 2e-3},
}


def run_one(mode: str, args: argparse.Namespace, out: Path) -> dict:
    """One fine-tuning run in this process; returns its figures (peak RSS of this process included)."""
    import torch

    from owngpt.config import load_run_config
    from owngpt.train.sft import SFTConfig, sft

    torch.set_num_threads(args.threads)
    spec = MODES[mode]
    overrides = [f"train.out_dir={out}", f"train.max_steps={args.steps}", f"train.lr={spec['lr']}",
                 f"train.min_lr={spec['lr'] / 10}", f"train.eval_interval={args.steps}", "train.tensorboard=false",
                 f"train.batch_size={args.batch_size}", "train.device=cpu", f"train.threads={args.threads}"]
    train_cfg = load_run_config("sft", overrides).train
    from owngpt.model.lora import LoRAConfig

    lora = LoRAConfig(rank=args.rank, alpha=2.0 * args.rank) if spec["lora"] else None
    cfg = SFTConfig(base=args.base, data=[args.data], persona=args.persona, lora=lora)
    start = time.perf_counter()
    result, report = sft(cfg, train_cfg, quiet=True)
    seconds = time.perf_counter() - start
    saved = sum(f.stat().st_size for f in (out / "best").glob("*.safetensors"))
    return {"mode": mode, "lr": spec["lr"], "trainable": report["trainable_parameters"], "seconds": seconds,
            "tokens_per_s": result.tokens_per_s, "val_loss": result.best_val_loss, "saved_bytes": saved,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="runs/quickstart/pretrain", help="pretrained run or checkpoint")
    ap.add_argument("--data", default="runs/quickstart/data", help="prepared folder with conversations")
    ap.add_argument("--persona", default="example-en")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 * rank)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", choices=sorted(MODES), help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args, Path(args.out))))
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            cmd = [sys.executable, __file__, "--one", mode, "--out", f"{tmp}/{mode}", "--base", args.base,
                   "--data", args.data, "--persona", args.persona, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--rank", str(args.rank), "--threads", str(args.threads)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    full = rows[0]
    print(f"base {args.base}, data {args.data}, persona {args.persona}; {args.steps} steps, batch {args.batch_size}, "
          f"{args.threads} threads; LoRA rank {args.rank} on c_attn, c_proj, c_fc")
    print("| mode | lr | trainable params | saved weights | peak RSS | time | tokens/s | val loss |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['lr']:g} | {r['trainable']:,} ({r['trainable'] / full['trainable']:.1%}) "
              f"| {r['saved_bytes'] / 1e6:.2f} MB | {r['peak_rss_mb']:.0f} MB ({r['peak_rss_mb'] / full['peak_rss_mb']:.2f}×) "
              f"| {r['seconds']:.0f} s ({r['seconds'] / full['seconds']:.2f}×) | {r['tokens_per_s']:,.0f} | {r['val_loss']:.4f} |")


if __name__ == "__main__":
    main()
