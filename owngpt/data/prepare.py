"""`prepare()`: sources → cleaned, deduplicated, split records → tokenizer → token shards, with a full report.

    report = prepare(["notes/", "chats.jsonl", "builtin:peoples-daily"], "data/", PrepareConfig())

Writes, in this order (see docs/architecture.md for the formats):
  DIR/docs/{train,val,test}.jsonl            {"id", "source", "text"} cleaned documents
  DIR/conversations/{train,val,test}.jsonl   {"id", "source", "messages"} cleaned conversations
  DIR/tokenizer/                             the given tokenizer, or one trained on the train split
  DIR/tokens/{split}_{k:04d}.bin             token shards (owngpt/data/shards.py)
  DIR/report.json                            every input record accounted for: records = documents in +
                                             conversations in + skipped; in = kept + removed; per filter changed /
                                             removed counts with up to 3 examples; skips with file:line and reason
  DIR/manifest.json                          last, atomically; it also stores the run's fingerprint

Caching: when the fingerprint of the inputs and settings (owngpt/data/fingerprint.py) equals the one in a valid
manifest, prepare does nothing and returns the stored report with "cached": True. A new run first deletes
manifest.json and any `.tmp` left by an interrupted run, so a folder never looks complete while it is not.

The steps: read (owngpt/data/sources.py) → clean (owngpt/data/clean.py, in worker processes for large inputs:
owngpt/data/workers.py) → count, deduplicate, split and write (owngpt/data/assemble.py) → tokenizer → shards
(owngpt/data/shards.py), accounted for in owngpt/data/report.py.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from owngpt.data.assemble import RecordPass
from owngpt.data.chats.export import ChatExports
from owngpt.data.chats.model import ChatOptions
from owngpt.data.clean import CleanConfig, Cleaner
from owngpt.data.corpus import split_texts
from owngpt.data.dedup import NearDedupConfig
from owngpt.data.fingerprint import cached_report, fingerprint, input_bytes, input_fingerprint_data
from owngpt.data.pii import scrubbed
from owngpt.data.records import Record
from owngpt.data.report import Progress, Report, check_accounting
from owngpt.data.shards import (
    DEFAULT_SHARD_TOKENS,
    FORMAT,
    ShardPipeline,
    dtype_for,
    remove_stale_temps,
    tokenize_to_shards,
    write_manifest,
)
from owngpt.data.sources import ReadOptions, read_sources
from owngpt.data.split import DEFAULT_RATIOS, SPLITS, parse_ratios, tail_cut, unit_hash
from owngpt.data.workers import SERIAL_BYTES, cleaned_records, default_workers, start_pool
from owngpt.errors import OwnGPTError
from owngpt.io import TMP_SUFFIX, atomic_write_text, fsync_tree, output_dir, publish_dir
from owngpt.tokenizer import Tokenizer, train_bpe, train_char


@dataclass
class PrepareConfig:
    """Every switch of `owngpt prepare`."""

    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: bool = True  # exact duplicates (and near ones, unless near_dup_threshold is 0)
    near_dup_threshold: float = 0.8  # MinHash/LSH Jaccard threshold on character 4-grams; 0 = no near dedup
    split: tuple[float, float, float] = DEFAULT_RATIOS  # train, val, test
    split_mode: str = "hash"  # hash | tail
    tail: float = 0.1  # tail mode: the last fraction of the documents' text → val
    tokenizer: str | None = None  # an existing tokenizer (folder or tokenizer.json); None = train one
    tokenizer_kind: str = "bpe"  # bpe | char, when training one
    vocab_size: int = 4096  # when training a BPE tokenizer
    tokenizer_sample_chars: int = 50_000_000  # train the tokenizer on at most ~this many characters of train text
    text_field: str = "text"
    text_column: str = "text"
    split_blocks: bool = False
    conversations_as_text: bool = False  # also use each conversation's utterances as a pretraining document
    max_documents: int = 0  # read at most this many documents + conversations; 0 = all
    workers: int = 0  # processes that clean; 0 = one per CPU for inputs of 4 MB or more (Linux), 1 = none
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    chats: ChatOptions | None = None  # chat exports: who is me, sessions, groups, block list (None = none given)

    @property
    def reading(self) -> ReadOptions:
        """How the sources are read: the options read_sources takes (and a dry run, so it reads the same)."""
        return ReadOptions(self.text_field, self.text_column, self.split_blocks, self.chats)


def _validate(cfg: PrepareConfig) -> tuple[float, float, float]:
    if cfg.split_mode not in ("hash", "tail"):
        raise OwnGPTError(f"split mode must be 'hash' or 'tail', not {cfg.split_mode!r}")
    if cfg.tokenizer_kind not in ("bpe", "char"):
        raise OwnGPTError(f"tokenizer kind must be 'bpe' or 'char', not {cfg.tokenizer_kind!r}")
    if not 0.0 <= cfg.near_dup_threshold <= 1.0:
        raise OwnGPTError(f"--near-dup-threshold must be between 0 and 1 (0 = off), not {cfg.near_dup_threshold}")
    if cfg.split_mode == "tail":
        tail_cut("x", cfg.tail)  # validates the fraction
    if cfg.clean.max_chars and cfg.clean.max_chars < cfg.clean.min_chars:
        raise OwnGPTError(f"--max-chars {cfg.clean.max_chars} is below --min-chars {cfg.clean.min_chars}")
    return parse_ratios(cfg.split)


def prepare(sources: list[str], out: str | Path, cfg: PrepareConfig | None = None, *, progress: bool = True,
            force: bool = False, exports: ChatExports | None = None) -> dict[str, Any]:
    """Run the whole data stage (see the module docstring); returns the report (also in DIR/report.json).
    `exports`: chat exports this run has parsed already (owngpt/data/chats/export.py), read again without parsing.

    Raises OwnGPTError for problems the user must fix (missing paths, an empty corpus, a bad option).
    """
    cfg = cfg or PrepareConfig()
    ratios = _validate(cfg)
    sources = [str(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    if not sources:
        raise OwnGPTError("no sources given: name files, folders, globs or builtin:NAME corpora")
    out = output_dir(out, create=False)  # a file there is a one-line error before any work
    given_tok = Tokenizer.load(cfg.tokenizer) if cfg.tokenizer else None
    # The output folder may lie inside an input folder (`owngpt prepare . --out data`): it is never read as input.
    # User errors in the specs (a missing file, a --me that names nobody) are raised here.
    exports = exports if exports is not None else ChatExports()
    records = read_sources(sources, cfg.reading, exclude=[out], exports=exports)
    inputs = input_fingerprint_data(sources, exclude=[out])  # stats every input once, for the cache and the pool
    fp = fingerprint(inputs, cfg, given_tok.hash if given_tok is not None else None)
    ui = Progress(progress)
    cached = None if force else cached_report(out, fp)
    if cached is not None:
        ui.print(f"{out} is up to date (same inputs and settings): nothing to do")
        return cached

    _start_rewrite(out)
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    rep = Report(Cleaner(cfg.clean))
    near_cfg = NearDedupConfig(threshold=cfg.near_dup_threshold) if cfg.dedup and cfg.near_dup_threshold > 0 else None
    workers = cfg.workers or (default_workers() if input_bytes(inputs) >= SERIAL_BYTES else 1)
    pool = start_pool(workers, cfg.clean, near_cfg, cfg.dedup)  # before any thread of ours starts: workers are forked
    with ui:
        try:
            stats, splits = _read_clean_split(records, out, cfg, ratios, rep, ui, near_cfg, pool, workers, given_tok)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        seconds["read_clean_dedup_split"] = round(time.perf_counter() - t0, 2)
        report = _split_report(rep, stats, sources, cfg, ratios, out, exports)

        t1 = time.perf_counter()
        tok = given_tok if given_tok is not None else _train_tokenizer(out, cfg, stats)
        _save_tokenizer(tok, out)
        seconds["tokenizer"] = round(time.perf_counter() - t1, 2)

        t2 = time.perf_counter()
        if splits is None or stats["moved"]["documents"]:  # (a document moved to val: shards must follow)
            splits = _tokenize(tok, out, cfg, stats, ui)
        seconds["tokenize"] = round(time.perf_counter() - t2, 2)  # only what did not overlap with reading

    _remove_unlisted_shards(out, splits)
    seconds["total"] = round(time.perf_counter() - t0, 2)
    report.update(_finished_report(seconds, stats, splits, tok, given_tok is None, cfg))
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_manifest(out, _manifest(tok, splits, stats, fp))  # last: its presence means everything above is complete
    return report


# ----------------------------------------------------------------------------- the steps


def _start_rewrite(out: Path) -> None:
    """From here on the folder is being rewritten: make sure it cannot look complete until the manifest is back."""
    output_dir(out)
    (out / "manifest.json").unlink(missing_ok=True)
    remove_stale_temps(out)
    shutil.rmtree(out / f"tokenizer{TMP_SUFFIX}", ignore_errors=True)


def _read_clean_split(records: Iterable[Record], out: Path, cfg: PrepareConfig, ratios: tuple[float, float, float],
                      rep: Report, ui: Progress, near_cfg: NearDedupConfig | None, pool: ProcessPoolExecutor | None,
                      workers: int, given_tok: Tokenizer | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Read, clean, deduplicate, split and write DIR/docs and DIR/conversations: (the pass's counts, the shards'
    manifest entries when documents were tokenized while being read, else None).

    Cleaning and MinHash run in the `pool`'s worker processes for large inputs (owngpt/data/workers.py). With a
    given tokenizer, documents are also tokenized while they are still being read and cleaned; a trained tokenizer
    needs the whole train split first, so tokenization waits."""
    pipeline = None
    try:
        if given_tok is not None and cfg.split_mode == "hash":
            pipeline = ShardPipeline(given_tok, out, SPLITS, shard_tokens=cfg.shard_tokens)
        cleaned = cleaned_records(records, cfg.clean, near_cfg, cfg.dedup, as_text=cfg.conversations_as_text,
                                  pool=pool, workers=workers)
        stats = RecordPass(out, cfg, ratios, rep, near_cfg, sink=pipeline.add if pipeline is not None else None).run(
            cleaned, ui)
        return stats, (pipeline.close() if pipeline is not None else None)
    except BaseException:
        if pipeline is not None:
            pipeline.abort()
        raise


def _split_report(rep: Report, stats: dict[str, Any], sources: list[str], cfg: PrepareConfig,
                  ratios: tuple[float, float, float], out: Path, exports: ChatExports) -> dict[str, Any]:
    """The report so far, checked to account for every record; OwnGPTError (with report.json written) when
    nothing was kept."""
    report = rep.as_dict()
    report["input"] = {"bytes_of_text": stats["bytes"], "specs": [scrubbed(s) for s in sources]}
    report["chat_exports"] = exports.summaries()  # each export: read as a chat, left out or read as a document
    report["splits"] = {"documents": stats["docs"], "conversations": stats["convs"],
                        "mode": cfg.split_mode, "ratios": list(ratios), "moved_to_val": stats["moved"]}
    check_accounting(report)
    if sum(stats["docs"].values()) + sum(stats["convs"].values()) == 0:
        atomic_write_text(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        t = report["total"]
        raise OwnGPTError(
            f"nothing to prepare: {t['records']} records read from {', '.join(sources)}; "
            f"{t['skipped']} skipped, {t['documents']['removed'] + t['conversations']['removed']} removed by "
            f"filters (see {out / 'report.json'})"
        )
    return report


def _save_tokenizer(tok: Tokenizer, out: Path) -> None:
    tmp_dir = out / f"tokenizer{TMP_SUFFIX}"
    tok.save(tmp_dir)
    fsync_tree(tmp_dir)
    publish_dir(tmp_dir, out / "tokenizer")


def _tokenize(tok: Tokenizer, out: Path, cfg: PrepareConfig, stats: dict[str, Any], ui: Progress) -> dict[str, Any]:
    """Tokenize the written documents of every split into shards; their manifest entries."""
    splits = {}
    for s in SPLITS:
        task = ui.task(f"tokenize {s}", total=stats["docs"][s])
        splits[s] = tokenize_to_shards(
            tok, split_texts(out, s, kinds=("docs",)), out, s, shard_tokens=cfg.shard_tokens,
            on_chunk=lambda n, chars, task=task: ui.advance(task, n),
        )
    return splits


def _remove_unlisted_shards(out: Path, splits: dict[str, Any]) -> None:
    listed = {sh["file"] for s in splits.values() for sh in s["shards"]}
    for old in (out / "tokens").glob("*.bin"):  # shards of an earlier, larger run
        if f"tokens/{old.name}" not in listed:
            old.unlink()


def _finished_report(seconds: dict[str, float], stats: dict[str, Any], splits: dict[str, Any], tok: Tokenizer,
                     trained: bool, cfg: PrepareConfig) -> dict[str, Any]:
    """What the report adds once everything is written: timings, tokens per split, the tokenizer."""
    mb = stats["bytes"] / 1e6
    return {
        "seconds": seconds,
        "throughput_mb_per_s": round(mb / max(seconds["total"], 1e-9), 2),
        "tokens": {s: splits[s]["tokens"] for s in SPLITS},
        "tokenizer": {"kind": getattr(tok, "kind", cfg.tokenizer_kind), "vocab_size": tok.vocab_size,
                      "hash": tok.hash, "trained": trained},
        "cached": False,
    }


def _manifest(tok: Tokenizer, splits: dict[str, Any], stats: dict[str, Any], fp: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "dtype": dtype_for(tok.vocab_size),
        "tokenizer_hash": tok.hash,
        "vocab_size": tok.vocab_size,
        "splits": splits,
        "conversations": {s: {"conversations": stats["convs"][s], "file": f"conversations/{s}.jsonl"} for s in SPLITS},
        "fingerprint": fp,
    }


def _train_tokenizer(out: Path, cfg: PrepareConfig, stats: dict[str, Any]) -> Tokenizer:
    """Train the tokenizer on the train split (documents and conversation messages).

    BPE sees a deterministic sample of at most cfg.tokenizer_sample_chars characters (a hash of each text decides,
    so the sample is spread over all sources). The character tokenizer sees every split, so that no character of
    val/test is unknown to it.
    """
    if cfg.tokenizer_kind == "char":
        return train_char(t for s in SPLITS for t in split_texts(out, s))
    if not stats["doc_chars"].get("train") and not stats["convs"].get("train"):
        kept = sum(stats["doc_chars"].values()) > 0 or sum(stats["convs"].values()) > 0
        raise OwnGPTError("the train split is empty, so there is no text to train the tokenizer on: " + (
            "every kept document and conversation fell into val or test (the split follows a hash of each text; "
            "with this little text add more, or give --split 1,0,0 or --tokenizer PATH)" if kept else
            f"nothing was kept (see {out / 'report.json'} for what was skipped or removed)"))
    total = stats["doc_chars"]["train"] + stats["convs"]["train"] * 200  # conversations: a rough size
    rate = min(1.0, cfg.tokenizer_sample_chars / max(total, 1))
    sample = (t for t in split_texts(out, "train") if rate >= 1.0 or unit_hash("tokenizer:" + t) < rate)
    return train_bpe(sample, cfg.vocab_size)
