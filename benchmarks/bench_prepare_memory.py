"""Peak memory of `owngpt prepare` on inputs that used to blow it up, across its whole process tree, against a
baseline checkout in the same run.

    python benchmarks/bench_prepare_memory.py --baseline /path/to/older/checkout      # before/after table
    python benchmarks/bench_prepare_memory.py                                         # this checkout only
    python benchmarks/bench_prepare_memory.py --inputs line_txt --variants given      # one cell of the table

Inputs (written to a temp folder): a 20 MB text file that is one single line (`line_txt`), the same text as one
JSONL record (`line_jsonl`), and about 200 MB of ordinary text (2,000 files of mixed English and Chinese lines,
`ordinary`). Each runs in two variants: `trained` (the defaults: a tokenizer is trained on the train split) and
`given` (`--tokenizer`: a BPE tokenizer trained once beforehand, on 2 MB of the ordinary text, and given to every
run, so tokenization overlaps with reading). Near dedup is on in both.

Each `prepare` runs in its own subprocess with PYTHONPATH pointing at the checkout (it prints which owngpt it
imported). Memory is measured three ways: the main process's own peak (VmHWM, read at its exit), the largest
peak of any process it started and waited for (the forked cleaning workers: getrusage(RUSAGE_CHILDREN)), and the
peak of the sum of the resident memory of the whole tree (the main process and every descendant, sampled from
/proc every 20 ms: a spike shorter than that can be missed, and pages a worker still shares with the main
process since the fork count in both). The tree peak is the figure to compare: the cleaning of a long line runs
in a worker, not in the main process.
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
import sys, runpy, resource
import owngpt
print("CODE", owngpt.__file__, file=sys.stderr)
sys.argv = ["owngpt", "prepare", sys.argv[1], "--out", sys.argv[2], "--quiet"] + sys.argv[3:]
try:
    runpy.run_module("owngpt", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
main = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print("PEAK_KB", main, workers, "EXIT", code, file=sys.stderr)
"""

INPUTS = ("line_txt", "line_jsonl", "ordinary")
VARIANTS = ("trained", "given")
EN = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
      "you were her she there been one all we their has would when if so no more out up said what its about than "
      "into them can only other time new some could these two may first then do any like my now over such").split()
ZH = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你对能而子那得着下自之年过发后作里如家多")


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(EN) for _ in range(n))


def make_inputs(root: Path, wanted: set[str]) -> dict[str, Path]:
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
    for i in range(2000 if "ordinary" in wanted else 20):  # 20 files: the tokenizer's training sample
        lines, n = [], 0
        while n < 100_000:
            s = ("".join(rng.choice(ZH) for _ in range(rng.randint(10, 60))) + "。") if rng.random() < 0.2 \
                else words(rng, rng.randint(5, 25)) + "."
            lines.append(s)
            n += len(s.encode())
        (big / f"f{i:04d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"line_txt": root / "line_txt", "line_jsonl": root / "line_jsonl", "ordinary": big}


LABELS = {"line_txt": "20 MB, one line (`.txt`)", "line_jsonl": "20 MB, one JSONL record",
          "ordinary": "200 MB, 2,000 ordinary files"}


def train_tokenizer(root: Path, ordinary: Path, here: Path) -> Path:
    """A BPE tokenizer (vocab 4096) trained on the first 20 ordinary files (2 MB), with this checkout's code."""
    sample = root / "tok_sample"
    sample.mkdir()
    for f in sorted(ordinary.glob("*.txt"))[:20]:
        os.symlink(f, sample / f.name)
    tok = root / "tok"
    subprocess.run([sys.executable, "-m", "owngpt", "tokenizer", "train", str(sample), "--out", str(tok),
                    "--vocab-size", "4096"], env={**os.environ, "PYTHONPATH": str(here)}, check=True,
                   capture_output=True)
    return tok


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of `pid` and all its descendants, in KiB (0 for processes that have gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def run(code: Path, src: Path, out: Path, extra: list[str]) -> dict[str, float]:
    """One prepare: {"main", "workers", "tree" (MB), "seconds"}."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(src), str(out), *extra], env=env, cwd=code,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tree = 0
    while proc.poll() is None:
        tree = max(tree, _tree_rss_kb(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read()
    lines = err.splitlines()
    where = next((ln.split()[1] for ln in lines if ln.startswith("CODE ")), "")
    if not where.startswith(str(code)):
        raise SystemExit(f"the run imported owngpt from {where!r}, not from {code}")
    tail = [ln for ln in lines if ln.startswith("PEAK_KB")]
    if not tail or not tail[-1].endswith("EXIT 0"):
        raise SystemExit(f"prepare failed with {code}:\n{err[-2000:]}")
    main_kb, workers_kb = (int(x) for x in tail[-1].split()[1:3])
    return {"main": main_kb / 1024, "workers": workers_kb / 1024, "tree": max(tree, main_kb) / 1024,
            "seconds": seconds}


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    shown = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile"))
    return f"{model}, {os.cpu_count()} CPUs ({shown}), Python {sys.version.split()[0]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="an older checkout to measure in the same run (its repository root)")
    ap.add_argument("--inputs", default=",".join(INPUTS), help=f"comma-separated, of {', '.join(INPUTS)}")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = ap.parse_args()
    inputs = [i for i in args.inputs.split(",") if i]
    variants = [v for v in args.variants.split(",") if v]
    if not set(inputs) <= set(INPUTS) or not set(variants) <= set(VARIANTS):
        raise SystemExit(f"--inputs: {', '.join(INPUTS)}; --variants: {', '.join(VARIANTS)}")
    here = Path(__file__).resolve().parents[1]
    codes = ([("before", Path(args.baseline).resolve())] if args.baseline else []) + [("after", here)]
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_inputs(root, set(inputs))
        tok = train_tokenizer(root, paths["ordinary"], here) if "given" in variants else None
        rows = []
        for name in inputs:
            for variant in variants:
                extra = ["--tokenizer", str(tok)] if variant == "given" else []
                got = {}
                for label, code in codes:
                    got[label] = run(code, paths[name], root / f"out_{len(rows)}_{label}", extra)
                    print(f"  {name} {variant} {label}: {got[label]}", file=sys.stderr, flush=True)
                rows.append((name, variant, got))
    head = " | ".join(f"{label}: tree / main / largest worker MB, s" for label, _ in codes)
    print(f"| input | tokenizer | {head} |" + (" tree peak ratio |" if args.baseline else ""))
    print("|---|---|" + "---|" * len(codes) + ("---|" if args.baseline else ""))
    for name, variant, got in rows:
        cells = " | ".join(f"{g['tree']:,.0f} / {g['main']:,.0f} / {g['workers']:,.0f}, {g['seconds']:.1f}"
                           for g in (got[label] for label, _ in codes))
        ratio = f" {got['after']['tree'] / got['before']['tree']:.2f}× |" if args.baseline else ""
        print(f"| {LABELS[name]} | {'given' if variant == 'given' else 'trained'} | {cells} |{ratio}")


if __name__ == "__main__":
    main()
