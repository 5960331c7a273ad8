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

Caching: the fingerprint hashes the inputs (path, size and mtime of every file; the version of the package behind
each builtin:NAME), the config, the given tokenizer's hash, owngpt's version and PIPELINE_VERSION. When it equals
the one in a valid manifest, prepare does nothing and returns the stored report with "cached": True. A new run
first deletes manifest.json and any `.tmp` left by an interrupted run, so a folder never looks complete while it
is not.

Order of the steps for a document: clean (owngpt/data/clean.py) → exact dedup → near dedup (owngpt/data/dedup.py)
→ split (owngpt/data/split.py). Conversations: each message normalised and scrubbed, checked
(owngpt/data/conversations.check_conversation), exact-deduplicated, split by a hash of the whole conversation.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from glob import glob
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from owngpt.data.clean import CleanConfig, Cleaner
from owngpt.data.dedup import ExactDedup, NearDedup, NearDedupConfig
from owngpt.data.records import Conversation, Document, Skip
from owngpt.data.shards import (
    DEFAULT_SHARD_TOKENS,
    FORMAT,
    dtype_for,
    read_manifest,
    remove_stale_temps,
    tokenize_to_shards,
    write_manifest,
)
from owngpt.data.split import SPLITS, parse_ratios, split_of, tail_cut, unit_hash
from owngpt.data.workers import SERIAL_BYTES, cleaned_records, default_workers, start_pool
from owngpt.errors import OwnGPTError
from owngpt.io import TMP_SUFFIX, atomic_write_text


@dataclass
class PrepareConfig:
    """Every switch of `owngpt prepare`."""

    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: bool = True  # exact duplicates (and near ones, unless near_dup_threshold is 0)
    near_dup_threshold: float = 0.8  # MinHash/LSH Jaccard threshold on character 4-grams; 0 = no near dedup
    split: tuple[float, float, float] = (0.9, 0.05, 0.05)  # train, val, test
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


# ----------------------------------------------------------------------------- fingerprint


def _owngpt_version() -> str:
    try:
        from importlib.metadata import version

        return version("owngpt")
    except Exception:  # not installed (running from a checkout)
        return "0"


def _stat_entry(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def input_fingerprint_data(specs: list[str]) -> list:
    """What identifies the inputs without reading them: file paths, sizes and mtimes; builtin package versions."""
    from owngpt.data.sources import BUILTIN_PREFIX, DIALOGUE_PREFIXES

    out: list = []
    for spec in specs:
        if spec.startswith(BUILTIN_PREFIX):
            from importlib.metadata import PackageNotFoundError, version

            from owngpt.data.builtin import BUILTINS

            b = BUILTINS.get(spec[len(BUILTIN_PREFIX):])
            try:
                out.append([spec, version(b.pip) if b else None])
            except PackageNotFoundError:
                out.append([spec, None])
            continue
        target = spec.split(":", 1)[1] if spec.startswith(DIALOGUE_PREFIXES) else spec
        paths = [Path(target)] if os.path.exists(target) else [Path(p) for p in sorted(glob(target, recursive=True))]
        entry: list = [spec]
        for p in paths:
            if p.is_dir():
                for root, dirs, files in os.walk(p):
                    dirs.sort()
                    entry.extend(_stat_entry(Path(root) / f) for f in sorted(files))
            elif p.exists():
                entry.append(_stat_entry(p))
        out.append(entry)
    return out


# Bumped whenever the same inputs and settings would give different output (a cleaning or dedup fix), so that a
# folder prepared by an earlier version is redone instead of reported up to date. 2: near-dedup batch-merge fix.
PIPELINE_VERSION = 2


def input_bytes(inputs: list) -> int:
    """Bytes in the input files of input_fingerprint_data (builtin corpora count 0): is cleaning worth a pool?"""
    return sum(e[1] for entry in inputs for e in entry[1:] if isinstance(e, list))


def fingerprint(inputs: list, cfg: PrepareConfig, tokenizer_hash: str | None) -> str:
    """Hash of input_fingerprint_data(specs), the settings and versions (see the module docstring)."""
    blob = json.dumps(
        {"inputs": inputs, "config": {k: v for k, v in asdict(cfg).items() if k != "workers"},
         "tokenizer": tokenizer_hash, "owngpt": _owngpt_version(), "format": FORMAT, "pipeline": PIPELINE_VERSION},
        sort_keys=True, default=str,
    )
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


# ----------------------------------------------------------------------------- accounting


def _counts() -> dict[str, int]:
    return {"in": 0, "kept": 0, "changed": 0, "removed": 0}


class Report:
    """Counts per source and per filter; skips with their file:line and reason; checks that everything adds up."""

    MAX_SKIPS_LISTED = 1000

    def __init__(self, cleaner: Cleaner) -> None:
        self.cleaner = cleaner
        self.sources: dict[str, dict[str, Any]] = {}
        self.skips: list[str] = []
        self.skip_reasons: dict[str, int] = {}
        self.converted: dict[str, int] = {}

    def source(self, name: str) -> dict[str, Any]:
        if name not in self.sources:
            self.sources[name] = {"records": 0, "skipped": 0, "documents": _counts(), "conversations": _counts(),
                                  "conversations_as_text": _counts()}
        return self.sources[name]

    def skip(self, rec: Skip) -> None:
        s = self.source(rec.source)
        s["records"] += 1
        s["skipped"] += 1
        if len(self.skips) < self.MAX_SKIPS_LISTED:  # readers' reasons may already start with file:line
            where = rec.loc.split(" [")[0]
            self.skips.append(rec.reason if rec.reason.startswith(where + ":") else f"{rec.loc}: {rec.reason}")
        key = _reason_kind(rec.reason)
        self.skip_reasons[key] = self.skip_reasons.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        total: dict[str, Any] = {"records": 0, "skipped": 0, "documents": _counts(), "conversations": _counts(),
                                 "conversations_as_text": _counts()}
        for s in self.sources.values():
            total["records"] += s["records"]
            total["skipped"] += s["skipped"]
            for kind in ("documents", "conversations", "conversations_as_text"):
                for k, v in s[kind].items():
                    total[kind][k] += v
        return {
            "sources": self.sources,
            "total": total,
            "filters": self.cleaner.report(),
            "skips": {"count": total["skipped"], "by_reason": dict(sorted(self.skip_reasons.items())),
                      "listed": self.skips, "listed_all": total["skipped"] <= len(self.skips)},
            "converted_encodings": self.converted,
        }


def _reason_kind(reason: str) -> str:
    """'x.jsonl:17: invalid JSON: Expecting ...' -> 'invalid JSON'; groups skips by what went wrong."""
    import re

    r = re.sub(r"^\S+:\d+: ", "", reason)
    r = re.sub(r"\d+", "N", r.split(":")[0])
    return r.strip()[:80]


def check_accounting(report: dict[str, Any]) -> None:
    """Raise AssertionError unless every record is accounted for (used by tests and at the end of prepare)."""
    for name, s in list(report["sources"].items()) + [("total", report["total"])]:
        assert s["records"] == s["documents"]["in"] + s["conversations"]["in"] + s["skipped"], name
        for kind in ("documents", "conversations", "conversations_as_text"):
            c = s[kind]
            assert c["in"] == c["kept"] + c["removed"], (name, kind, c)


# ----------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress display when enabled; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p = None
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.console = Console(stderr=True)
            self._p = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                               console=self.console, transient=False)

    def __enter__(self) -> "_Progress":
        if self._p is not None:
            self._p.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    def task(self, description: str, total: int | None = None) -> int | None:
        return self._p.add_task(description, total=total, info="") if self._p is not None else None

    def advance(self, task: int | None, n: int = 1, info: str = "") -> None:
        if self._p is not None and task is not None:
            self._p.update(task, advance=n, info=info)

    def print(self, msg: str) -> None:
        if self.enabled:
            self.console.print(msg)


# ----------------------------------------------------------------------------- writing records


class _SplitWriters:
    """One `.tmp` JSONL file per split under DIR/{kind}/, renamed into place by commit()."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.files = {s: open(folder / f"{s}.jsonl{TMP_SUFFIX}", "w", encoding="utf-8") for s in SPLITS}
        self.counts = {s: 0 for s in SPLITS}
        self.chars = {s: 0 for s in SPLITS}
        self.top_train: tuple[float, int] = (-1.0, -1)  # (hash, line) of the train record closest to val

    def write(self, split: str, obj: dict[str, Any], u: float = 0.0, chars: int = 0) -> None:
        if split == "train" and u > self.top_train[0]:
            self.top_train = (u, self.counts["train"])
        self.files[split].write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.counts[split] += 1
        self.chars[split] += chars

    def commit(self, ensure_val: bool) -> bool:
        """Close and rename into place. With ensure_val, an empty val split gets the one train record whose hash
        is closest to val's interval (only tiny corpora end up with no val record). Returns whether it moved one."""
        for f in self.files.values():
            f.close()
        moved = False
        if ensure_val and self.counts["val"] == 0 and self.counts["train"] >= 2:
            src = self.folder / f"train.jsonl{TMP_SUFFIX}"
            kept = self.folder / f"train.jsonl{TMP_SUFFIX}2"
            with open(src, encoding="utf-8") as fin, open(kept, "w", encoding="utf-8") as fout, \
                    open(self.folder / f"val.jsonl{TMP_SUFFIX}", "w", encoding="utf-8") as fval:
                for i, line in enumerate(fin):
                    (fval if i == self.top_train[1] else fout).write(line)
            os.replace(kept, src)
            self.counts["train"] -= 1
            self.counts["val"] += 1
            moved = True
        for s in SPLITS:
            tmp = self.folder / f"{s}.jsonl{TMP_SUFFIX}"
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / f"{s}.jsonl")
        return moved


def iter_texts(path: Path) -> Iterator[str]:
    """The 'text' of each line of a docs/{split}.jsonl file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


def iter_message_texts(path: Path) -> Iterator[str]:
    """The contents of every message of a conversations/{split}.jsonl file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            for m in json.loads(line)["messages"]:
                yield m["content"]


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


# ----------------------------------------------------------------------------- the pipeline


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


def _cached(out: Path, fp: str) -> dict[str, Any] | None:
    try:
        manifest = read_manifest(out)
    except OwnGPTError:
        return None
    if manifest.get("fingerprint") != fp or not (out / "report.json").is_file():
        return None
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    report["cached"] = True
    return report


def prepare(sources: list[str], out: str | Path, cfg: PrepareConfig | None = None, *, progress: bool = True,
            force: bool = False) -> dict[str, Any]:
    """Run the whole data stage (see the module docstring); returns the report (also in DIR/report.json).

    Raises OwnGPTError for problems the user must fix (missing paths, an empty corpus, a bad option).
    """
    cfg = cfg or PrepareConfig()
    ratios = _validate(cfg)
    sources = [str(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    if not sources:
        raise OwnGPTError("no sources given: name files, folders, globs or builtin:NAME corpora")
    out = Path(out)
    from owngpt.data.sources import read_sources

    given_tok = None
    if cfg.tokenizer:
        from owngpt.tokenizer import Tokenizer

        given_tok = Tokenizer.load(cfg.tokenizer)
    records = read_sources(sources, text_field=cfg.text_field, text_column=cfg.text_column,
                           split_blocks=cfg.split_blocks)  # user errors in the specs are raised here
    inputs = input_fingerprint_data(sources)  # stats every input file: done once, for the cache and the pool
    fp = fingerprint(inputs, cfg, given_tok.hash if given_tok is not None else None)
    ui = _Progress(progress)
    if not force:
        cached = _cached(out, fp)
        if cached is not None:
            ui.print(f"[green]{out} is up to date[/green] (same inputs and settings): nothing to do")
            return cached

    # From here on the folder is being rewritten: make sure it cannot look complete until the manifest is back.
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    remove_stale_temps(out)
    shutil.rmtree(out / f"tokenizer{TMP_SUFFIX}", ignore_errors=True)

    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    cleaner = Cleaner(cfg.clean)
    rep = Report(cleaner)
    # Cleaning and MinHash run in worker processes for large inputs (owngpt/data/workers.py). With a given
    # tokenizer, documents are also tokenized while they are still being read and cleaned; a trained tokenizer
    # needs the whole train split first, so tokenization waits.
    near_cfg = NearDedupConfig(threshold=cfg.near_dup_threshold) if cfg.dedup and cfg.near_dup_threshold > 0 else None
    workers = cfg.workers or (default_workers() if input_bytes(inputs) >= SERIAL_BYTES else 1)
    pool = start_pool(workers, cfg.clean, near_cfg, cfg.dedup)  # before any thread of ours starts: workers are forked
    pipeline = None
    with ui:
        try:
            if given_tok is not None and cfg.split_mode == "hash":
                from owngpt.data.shards import ShardPipeline

                pipeline = ShardPipeline(given_tok, out, SPLITS, shard_tokens=cfg.shard_tokens)
            cleaned = cleaned_records(records, cfg.clean, near_cfg, cfg.dedup, as_text=cfg.conversations_as_text,
                                      pool=pool, workers=workers)
            stats = _read_clean_split(cleaned, out, cfg, ratios, cleaner, rep, ui, near_cfg,
                                      sink=pipeline.add if pipeline is not None else None)
            splits: dict[str, Any] | None = pipeline.close() if pipeline is not None else None
        except BaseException:
            if pipeline is not None:
                pipeline.abort()
            raise
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        seconds["read_clean_dedup_split"] = round(time.perf_counter() - t0, 2)
        report = rep.as_dict()
        report["input"] = {"bytes_of_text": stats["bytes"], "specs": sources}
        report["splits"] = {"documents": stats["docs"], "conversations": stats["convs"],
                            "mode": cfg.split_mode, "ratios": list(ratios), "moved_to_val": stats["moved"]}
        check_accounting(report)
        kept_docs, kept_convs = sum(stats["docs"].values()), sum(stats["convs"].values())
        if kept_docs + kept_convs == 0:
            atomic_write_text(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
            t = report["total"]
            raise OwnGPTError(
                f"nothing to prepare: {t['records']} records read from {', '.join(sources)}; "
                f"{t['skipped']} skipped, {t['documents']['removed'] + t['conversations']['removed']} removed by "
                f"filters (see {out / 'report.json'})"
            )

        t1 = time.perf_counter()
        tok = given_tok if given_tok is not None else _train_tokenizer(out, cfg, stats)
        tmp_dir = out / f"tokenizer{TMP_SUFFIX}"
        tok.save(tmp_dir)
        shutil.rmtree(out / "tokenizer", ignore_errors=True)
        os.replace(tmp_dir, out / "tokenizer")
        seconds["tokenizer"] = round(time.perf_counter() - t1, 2)

        t2 = time.perf_counter()
        if splits is None or stats["moved"]["documents"]:  # (a document moved to val: shards must follow)
            splits = {}
            for s in SPLITS:
                task = ui.task(f"tokenize {s}", total=stats["docs"][s])
                splits[s] = tokenize_to_shards(
                    tok, iter_texts(out / "docs" / f"{s}.jsonl"), out, s, shard_tokens=cfg.shard_tokens,
                    on_chunk=lambda n, chars, task=task: ui.advance(task, n),
                )
        seconds["tokenize"] = round(time.perf_counter() - t2, 2)  # only what did not overlap with reading

    listed = {sh["file"] for s in splits.values() for sh in s["shards"]}
    for old in (out / "tokens").glob("*.bin"):  # shards of an earlier, larger run
        if f"tokens/{old.name}" not in listed:
            old.unlink()
    seconds["total"] = round(time.perf_counter() - t0, 2)
    report["seconds"] = seconds
    mb = stats["bytes"] / 1e6
    report["throughput_mb_per_s"] = round(mb / max(seconds["total"], 1e-9), 2)
    report["tokens"] = {s: splits[s]["tokens"] for s in SPLITS}
    report["tokenizer"] = {"kind": getattr(tok, "kind", cfg.tokenizer_kind), "vocab_size": tok.vocab_size,
                           "hash": tok.hash, "trained": given_tok is None}
    report["cached"] = False
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    manifest = {
        "format": FORMAT,
        "dtype": dtype_for(tok.vocab_size),
        "tokenizer_hash": tok.hash,
        "vocab_size": tok.vocab_size,
        "splits": splits,
        "conversations": {s: {"conversations": stats["convs"][s], "file": f"conversations/{s}.jsonl"} for s in SPLITS},
        "fingerprint": fp,
    }
    write_manifest(out, manifest)  # last: its presence means everything above is complete
    return report


def _read_clean_split(cleaned, out: Path, cfg: PrepareConfig, ratios, cleaner: Cleaner, rep: Report,
                      ui: _Progress, near_cfg: NearDedupConfig | None, sink=None) -> dict[str, Any]:
    """Pass over the (record, cleaning result) pairs of workers.cleaned_records: count the cleaning, dedup, split,
    write DIR/docs and DIR/conversations. Returns counts.

    sink(split, text), when given, also receives every kept document in the order it is written."""
    from owngpt.data.conversations import check_conversation
    from owngpt.data.sources import converted_from

    exact_docs = ExactDedup() if cfg.dedup else None
    exact_convs = ExactDedup() if cfg.dedup else None
    near = NearDedup(near_cfg) if near_cfg is not None else None
    docs = _SplitWriters(out / "docs")
    convs = _SplitWriters(out / "conversations")
    tail_tmp = None
    if cfg.split_mode == "tail":
        tail_tmp = open(out / "docs" / f"_all.jsonl{TMP_SUFFIX}", "w", encoding="utf-8")
    tail_chars = 0
    pending: list[tuple[str, str, str, str, str, Any]] = []  # (text, source, loc, split key, counter kind, band keys)
    n_bytes = 0
    read = 0
    task = ui.task("read, clean, dedup", total=None)

    def emit(text: str, source: str, split_key: str, kind: str) -> None:
        nonlocal tail_chars
        rep.source(source)[kind]["kept"] += 1
        obj = {"id": _key(text), "source": source, "text": text}
        if tail_tmp is not None:
            tail_tmp.write(json.dumps(obj, ensure_ascii=False) + "\n")
            tail_chars += len(text)
            return
        u = unit_hash(split_key)
        split = split_of(u, ratios)
        docs.write(split, obj, u, len(text))
        if sink is not None:
            sink(split, text)

    def flush() -> None:
        if near is not None and pending:
            dup = near.duplicates_of_keys(np.stack([p[5] for p in pending]))
        else:
            dup = [False] * len(pending)
        for (text, source, loc, split_key, kind, _), d in zip(pending, dup):
            if d:
                rep.source(source)[kind]["removed"] += 1
                cleaner.note("near_dup", loc, text, None)
            else:
                emit(text, source, split_key, kind)
        pending.clear()

    def document(text: str, result, keys, exact_key, source: str, loc: str, split_key: str | None, kind: str) -> None:
        s = rep.source(source)[kind]
        s["in"] += 1
        out_text, changed = cleaner.account(text, loc, result)
        if out_text is None:
            s["removed"] += 1
            return
        if exact_docs is not None and exact_docs.seen_key(exact_key):
            s["removed"] += 1
            cleaner.note("exact_dup", loc, out_text, None)
            return
        if changed:
            s["changed"] += 1
        pending.append((out_text, source, loc, split_key or out_text, kind, keys))
        if len(pending) >= 256:
            flush()

    for rec, (doc_text, contents), (doc_result, message_results, keys, exact_key) in cleaned:
        if isinstance(rec, Skip):
            rep.skip(rec)
            continue
        if cfg.max_documents and read >= cfg.max_documents:
            break
        read += 1
        enc = converted_from(rec.loc)
        if enc:
            rep.converted[enc] = rep.converted.get(enc, 0) + 1
        src = rep.source(rec.source)
        src["records"] += 1
        if isinstance(rec, Document):
            n_bytes += len(rec.text.encode("utf-8", "surrogatepass"))
            document(rec.text, doc_result, keys, exact_key, rec.source, rec.loc, None, "documents")
        elif isinstance(rec, Conversation):
            c = src["conversations"]
            c["in"] += 1
            n_bytes += sum(len(t.encode("utf-8", "surrogatepass")) for t in contents)
            messages, changed = [], False
            for m, raw, result in zip(rec.messages, contents, message_results):
                content, ch = cleaner.account_message(raw, rec.loc, result)
                changed |= ch
                messages.append({"role": m.get("role"), "content": content})
            key = json.dumps(messages, ensure_ascii=False)
            ok, reason = check_conversation(messages)
            if ok is None:
                c["removed"] += 1
                cleaner.note("invalid_conversation", rec.loc, f"{reason}: {key}", None)
            elif exact_convs is not None and exact_convs.seen(key):
                c["removed"] += 1
                cleaner.note("exact_dup_conversation", rec.loc, key, None)
            else:
                c["kept"] += 1
                c["changed"] += int(changed)
                u = unit_hash(key)
                convs.write(split_of(u, ratios), {"id": _key(key), "source": rec.source, "messages": ok}, u)
            if cfg.conversations_as_text:  # doc_text: the utterances joined (workers._job)
                document(doc_text, doc_result, keys, exact_key, rec.source, rec.loc, key, "conversations_as_text")
        if read % 2000 == 0:
            ui.advance(task, 2000, f"{n_bytes / 1e6:.1f} MB")
    flush()
    ui.advance(task, read % 2000, f"{n_bytes / 1e6:.1f} MB")

    moved = {}
    if tail_tmp is not None:
        tail_tmp.close()
        moved["documents"] = False
        _tail_assign(out / "docs" / f"_all.jsonl{TMP_SUFFIX}", docs, tail_chars, cfg.tail)
        (out / "docs" / f"_all.jsonl{TMP_SUFFIX}").unlink()
        docs.commit(ensure_val=False)
    else:
        moved["documents"] = docs.commit(ensure_val=ratios[1] > 0)
    moved["conversations"] = convs.commit(ensure_val=ratios[1] > 0)
    return {"docs": dict(docs.counts), "convs": dict(convs.counts), "doc_chars": dict(docs.chars),
            "bytes": n_bytes, "moved": moved}


def _tail_assign(path: Path, docs: _SplitWriters, total_chars: int, fraction: float) -> None:
    """Tail mode: documents in reading order; the last `fraction` of all their characters goes to val. The
    document that straddles the boundary is cut in two (at a line break when one is close)."""
    boundary = int(total_chars * (1.0 - fraction))
    seen = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            text = obj["text"]
            if seen + len(text) <= boundary:
                docs.write("train", obj, 0.0, len(text))
            elif seen >= boundary:
                docs.write("val", obj, 0.0, len(text))
            else:
                cut = tail_cut(text, 1.0 - (boundary - seen) / len(text))
                head, tail = text[:cut], text[cut:]
                if head:
                    docs.write("train", {**obj, "id": _key(head), "text": head}, 0.0, len(head))
                if tail:
                    docs.write("val", {**obj, "id": _key(tail), "text": tail}, 0.0, len(tail))
            seen += len(text)


def _train_tokenizer(out: Path, cfg: PrepareConfig, stats: dict[str, Any]):
    """Train the tokenizer on the train split (documents and conversation messages).

    BPE sees a deterministic sample of at most cfg.tokenizer_sample_chars characters (a hash of each text decides,
    so the sample is spread over all sources). The character tokenizer sees every split, so that no character of
    val/test is unknown to it.
    """
    from owngpt import tokenizer as tokmod

    if cfg.tokenizer_kind == "char":
        def all_texts() -> Iterator[str]:
            for s in SPLITS:
                yield from iter_texts(out / "docs" / f"{s}.jsonl")
                yield from iter_message_texts(out / "conversations" / f"{s}.jsonl")

        return tokmod.train_char(all_texts())
    total = stats["doc_chars"]["train"] + stats["convs"]["train"] * 200  # conversations: a rough size
    rate = min(1.0, cfg.tokenizer_sample_chars / max(total, 1))

    def sample() -> Iterator[str]:
        for path, it in ((out / "docs" / "train.jsonl", iter_texts), (out / "conversations" / "train.jsonl",
                                                                     iter_message_texts)):
            for t in it(path):
                if rate >= 1.0 or unit_hash("tokenizer:" + t) < rate:
                    yield t

    return tokmod.train_bpe(sample(), cfg.vocab_size)
