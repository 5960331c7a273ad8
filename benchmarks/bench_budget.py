"""Buy quality with time: `owngpt quickstart --minutes N` at several budgets on this machine, one row per budget.

Each budget runs the README's command in its own folder (the built-in data is prepared once and copied, so every
run's clock starts alike) and reads back its quickstart_report.json: the plan (model, pretraining minutes, the
probe's tokens/s), what training did, the held-out figures and the reply to "Hi! What is your name?".

    python benchmarks/bench_budget.py --minutes 10,18,60 [--out runs/bench-budget] [--taskset 0]

`--taskset CPUS` pins every run to those CPUs (`taskset -c`), to see what a slower machine gets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import cpu_description  # noqa: E402


def run(minutes: float, out: Path, taskset: str, extra: list[str]) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "owngpt", "quickstart", "--minutes", f"{minutes:g}", "--out", str(out), "--no-chat",
           "--quiet", *extra]
    if taskset:
        cmd = ["taskset", "-c", taskset, *cmd]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return json.loads((out / "quickstart_report.json").read_text(encoding="utf-8")), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", default="10,18,60", help="comma-separated budgets")
    ap.add_argument("--out", default="runs/bench-budget")
    ap.add_argument("--taskset", default="", help="CPUs to pin the runs to, e.g. 0")
    ap.add_argument("--data", default="", help="a quickstart's prepared data folder to reuse (skips preparing)")
    ap.add_argument("--set", action="append", default=[], help="extra quickstart option, e.g. --set=--lang=zh")
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for minutes in (float(m) for m in args.minutes.split(",")):
        folder = out / f"min-{minutes:g}"
        shutil.rmtree(folder, ignore_errors=True)
        if args.data:
            shutil.copytree(args.data, folder / "data")
        report, wall = run(minutes, folder, args.taskset, args.set)
        rows.append((minutes, report, wall))
    print(f"{time.strftime('%Y-%m-%d')}; {cpu_description()}" + (f"; pinned to CPUs {args.taskset}" if args.taskset
                                                                  else ""))
    print("| --minutes | wall min | model | probe tok/s | pretraining min / steps / tokens | sft steps | "
          "held-out perplexity (base → chat) | persona (of 50) | distinct-1/2 | \"Hi! What is your name?\" |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for minutes, r, wall in rows:
        plan, pre, sft, ev = r.get("plan", {}), r["pretrain"], r["sft"], r["eval"]
        reply = r["sample"][0][1].replace("|", "\\|").replace("\n", " / ")
        print(f"| {minutes:g} | {wall / 60:.1f} | {plan.get('model', 'tiny-cpu')} | {plan.get('probe_tps', 0):,} | "
              f"{r['seconds']['pretrain'] / 60:.1f} / {pre['steps']:,} / {pre['tokens'] / 1e6:.1f}M | {sft['steps']:,} | "
              f"{ev.get('base_perplexity', float('nan')):.1f} → {ev['perplexity']:.1f} | "
              f"{ev['persona']['recall']:.0%} | {ev['distinct_1']:.3f} / {ev['distinct_2']:.3f} | {reply} |")
        for warning in plan.get("warnings", []):
            print(f"  warning ({minutes:g} min): {warning}")


if __name__ == "__main__":
    main()
