"""How reliably the quickstart's chat model names itself: fine-tune one pretrained base several times (seeds) at
several identity shares, as the quickstart does (its sft stage, its step count), and measure each: persona name
recall over the 50 held-out questions and held-out assistant perplexity (the quickstart's evaluation).

    python benchmarks/bench_persona.py --base runs/quickstart [--shares 0.15,0.25] [--seeds 0,1] [--steps 1400]
        [--lang zh] [--patience 0,3] [--sft-set train.optimizer=muon --sft-set train.muon_lr=2e-3]

`--base` is a finished quickstart folder (its pretrain/ and data/ are used; nothing in it is changed), of the
language `--lang` (its example persona is the one fine-tuned and asked). `--patience` compares early-stopping
settings (validations without improvement before fine-tuning stops; 0 = never; default: the quickstart's).
`--sft-set` adds fine-tuning overrides to every run (after the quickstart's own).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import cpu_description  # noqa: E402

from owngpt.pipeline import (  # noqa: E402
    SFT_PATIENCE, SFT_STEPS, QuickstartConfig, evaluate_quickstart, persona_path, sft_stage)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="runs/quickstart", help="a finished `owngpt quickstart` folder")
    ap.add_argument("--shares", default="0.15,0.25", help="identity shares to compare, comma-separated")
    ap.add_argument("--seeds", default="0,1", help="fine-tuning seeds, comma-separated")
    ap.add_argument("--steps", type=int, default=SFT_STEPS)
    ap.add_argument("--lang", default="en", choices=["en", "zh"], help="the base's language")
    ap.add_argument("--patience", default=str(SFT_PATIENCE), help="early-stopping settings to compare, comma-separated")
    ap.add_argument("--sft-set", action="append", default=[], help="a fine-tuning override for every run, e.g. "
                    "train.optimizer=muon")
    args = ap.parse_args()
    base = Path(args.base)
    shares = [float(s) for s in args.shares.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    patiences = [int(p) for p in args.patience.split(",")]
    evaluation = QuickstartConfig(lang=args.lang, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for share in shares:
                for patience in patiences:
                    chat = Path(tmp) / f"chat-{share}-{seed}-{patience}"
                    start = time.perf_counter()
                    sft = sft_stage(base / "pretrain", base / "data", chat, persona=persona_path(evaluation),
                                    steps=args.steps, seed=seed, quiet=True, echo=lambda _: None, identity_share=share,
                                    overrides=[f"train.patience={patience}", *args.sft_set])
                    seconds = time.perf_counter() - start
                    result = evaluate_quickstart(evaluation, base / "data", chat)
                    rows.append((share, seed, patience, result["persona"]["recall"], result["perplexity"], seconds,
                                 sft["steps"]))
                    print(f"share {share:.2f} seed {seed} patience {patience}: recall {rows[-1][3]:.0%}, perplexity "
                          f"{rows[-1][4]:.1f}, {sft['steps']} steps, {seconds / 60:.1f} min", file=sys.stderr)
    print(f"\n{cpu_description()}; base {base / 'pretrain'}; up to {args.steps} fine-tuning steps"
          + (f"; {' '.join(args.sft_set)}" if args.sft_set else "") + "\n")
    print("| identity share | seed | patience | fine-tuning steps | persona recall (50 answers) | held-out perplexity "
          "| fine-tuning min |")
    print("|---|---|---|---|---|---|---|")
    for share, seed, patience, recall, ppl, seconds, steps in rows:
        print(f"| {share:.2f} | {seed} | {patience} | {steps:,} | {recall:.0%} | {ppl:.1f} | {seconds / 60:.1f} |")
    print("\n| identity share | patience | recall mean (min–max) | perplexity mean |")
    print("|---|---|---|---|")
    for share in shares:
        for patience in patiences:
            mine = [r for r in rows if r[0] == share and r[2] == patience]
            recalls = [r[3] for r in mine]
            print(f"| {share:.2f} | {patience} | {statistics.mean(recalls):.0%} "
                  f"({min(recalls):.0%}–{max(recalls):.0%}) | {statistics.mean(r[4] for r in mine):.1f} |")


if __name__ == "__main__":
    main()
