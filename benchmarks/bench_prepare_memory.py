"""Peak memory of `owngpt prepare` on inputs that used to blow it up, against a baseline checkout in the same run.

    python benchmarks/bench_prepare_memory.py --baseline /path/to/older/checkout      # before/after table
    python benchmarks/bench_prepare_memory.py                                         # this checkout only

Inputs (written to a temp folder): a 20 MB text file that is one single line, the same text as one JSONL record,
and about 200 MB of ordinary text (2,000 files of mixed English and Chinese lines). Each `prepare` runs with its
defaults (tokenizer trained, near dedup on) in its own subprocess with PYTHONPATH pointing at the checkout, which
reports its own peak RSS (VmHWM) at exit; the cleaning worker processes are not counted (they stay ~60 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, runpy
sys.argv = ["owngpt", "prepare", sys.argv[1], "--out", sys.argv[2], "--quiet"]
try:
    runpy.run_module("owngpt", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("PEAK_MB", int(line.split()[1]) / 1024, "EXIT", code, file=sys.stderr)
"""

EN = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
      "you were her she there been one all we their has would when if so no more out up said what its about than "
      "into them can only other time new some could these two may first then do any like my now over such").split()
ZH = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你对能而子那得着下自之年过发后作里如家多")


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(EN) for _ in range(n))


def make_inputs(root: Path) -> dict[str, Path]:
    rng = random.Random(0)
    line = []
    size = 0
    while size < 20_000_000:  # one line: no newline anywhere
        piece = words(rng, 12) + " " + "".join(rng.choice(ZH) for _ in range(8)) + "。"
        line.append(piece)
        size += len(piece.encode())
    text = " ".join(line)
    (root / "line_txt").mkdir()
    (root / "line_txt" / "one_line.txt").write_text(text, encoding="utf-8")
    (root / "line_jsonl").mkdir()
    (root / "line_jsonl" / "one_line.jsonl").write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n",
                                                        encoding="utf-8")
    big = root / "ordinary"
    big.mkdir()
    for i in range(2000):
        lines, n = [], 0
        while n < 100_000:
            s = ("".join(rng.choice(ZH) for _ in range(rng.randint(10, 60))) + "。") if rng.random() < 0.2 \
                else words(rng, rng.randint(5, 25)) + "."
            lines.append(s)
            n += len(s.encode())
        (big / f"f{i:04d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"20 MB, one line (.txt)": root / "line_txt", "20 MB, one JSONL record": root / "line_jsonl",
            "200 MB, 2,000 ordinary files": big}


def run(code: Path, src: Path, out: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out)], env=env, cwd=code,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    tail = [ln for ln in res.stderr.splitlines() if ln.startswith("PEAK_MB")]
    if not tail or not tail[-1].endswith("EXIT 0"):
        raise SystemExit(f"prepare failed with {code}:\n{res.stderr[-2000:]}")
    return float(tail[-1].split()[1]), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="an older checkout to measure in the same run (its repository root)")
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    codes = ([("baseline", Path(args.baseline).resolve())] if args.baseline else []) + [("this checkout", here)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs = make_inputs(root)
        rows = []
        for name, src in inputs.items():
            got = {}
            for label, code in codes:
                got[label] = run(code, src, root / f"out_{len(rows)}_{label.replace(' ', '_')}")
            rows.append((name, got))
    head = " | ".join(f"{label}: peak MB, s" for label, _ in codes)
    print(f"| input | {head} |" + (" peak ratio |" if args.baseline else ""))
    print("|---|" + "---|" * len(codes) + ("---|" if args.baseline else ""))
    for name, got in rows:
        cells = " | ".join(f"{got[label][0]:,.0f}, {got[label][1]:.1f}" for label, _ in codes)
        ratio = f" {got['this checkout'][0] / got['baseline'][0]:.2f}× |" if args.baseline else ""
        print(f"| {name} | {cells} |{ratio}")


if __name__ == "__main__":
    main()
