"""The C library's allocator (owngpt/allocator.py): the same commands with glibc's defaults (OWNGPT_MALLOC=default)
and with owngpt's setting (freed memory kept for reuse), run in turn as whole processes, several times each.

For each command: wall seconds, system seconds, minor page faults and peak resident memory (the kernel's own
accounting of the finished child, os.wait4), medians over the runs, and the ratio.
Commands (on the quickstart's data and models, `owngpt quickstart` first):
  pretrain  300 steps of the quickstart's pretraining shape (tiny-cpu, context 256)
  sft       100 steps of chat fine-tuning from the quickstart's base
  generate  16 samples of 128 tokens from the quickstart's chat model

    python benchmarks/bench_allocator.py [--quickstart runs/quickstart] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import cpu_description  # noqa: E402


def commands(qs: Path, tmp: Path) -> dict[str, list[str]]:
    owngpt = [sys.executable, "-m", "owngpt"]
    return {
        "pretrain": owngpt + ["pretrain", "--data", str(qs / "data"), "--steps", "300", "--set", "model.block_size=256",
                              "--set", "train.eval_interval=0", "--set", "train.tensorboard=false",
                              "--set", "train.device=cpu", "--out", str(tmp / "pre"), "--resume", "none", "--quiet"],
        "sft": owngpt + ["sft", "--base", str(qs / "pretrain"), "--data", str(qs / "data"), "--steps", "100",
                         "--set", "train.eval_interval=0", "--set", "train.tensorboard=false",
                         "--set", "train.device=cpu", "--out", str(tmp / "sft"), "--resume", "none", "--quiet"],
        "generate": owngpt + ["generate", str(qs / "chat"), "Hello, how are you?", "-n", "16", "--max-new-tokens",
                              "128", "--no-stop-eot", "--seed", "0", "--no-stream", "--device", "cpu"],
    }


def run(cmd: list[str], allocator: str, tmp: Path) -> dict[str, float]:
    env = dict(os.environ, OWNGPT_MALLOC=allocator)
    for sub in ("pre", "sft"):
        subprocess.run(["rm", "-rf", str(tmp / sub)], check=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)  # this child's own accounting
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return {"wall": wall, "sys": usage.ru_stime, "faults": usage.ru_minflt, "rss": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quickstart", default="runs/quickstart", help="a finished `owngpt quickstart` folder")
    ap.add_argument("--runs", type=int, default=3, help="runs of each setting per command")
    ap.add_argument("--only", default="pretrain,sft,generate")
    args = ap.parse_args()
    qs = Path(args.quickstart)
    print(f"{time.strftime('%Y-%m-%d')}; {cpu_description()}; {args.runs} runs each, in turn")
    print("| command | allocator | wall s | sys s | minor faults | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, cmd in commands(qs, tmp).items():
            if name not in args.only.split(","):
                continue
            got: dict[str, list[dict]] = {"default": [], "owngpt": []}
            for _ in range(args.runs):
                for setting in ("default", "owngpt"):  # interleaved: drift hits both
                    got[setting].append(run(cmd, setting, tmp))
            med = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in got.items()}
            for setting in ("default", "owngpt"):
                m = med[setting]
                print(f"| {name} | {'glibc defaults' if setting == 'default' else 'kept for reuse'} | {m['wall']:.1f} | "
                      f"{m['sys']:.1f} | {m['faults']:,.0f} | {m['rss']:.0f} |", flush=True)
            d, o = med["default"], med["owngpt"]
            print(f"| {name} | ratio | {o['wall'] / d['wall']:.2f}× | {o['sys'] / max(d['sys'], 1e-9):.2f}× | "
                  f"{o['faults'] / max(d['faults'], 1):.3f}× | |", flush=True)


if __name__ == "__main__":
    main()
