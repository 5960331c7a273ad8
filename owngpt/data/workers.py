"""The per-record half of `prepare`'s cleaning, in worker processes: clean every text and MinHash it, in order.

Cleaning (Unicode, control characters, HTML, whitespace, personal data, filters) and the near-duplicate
signature of each kept text depend on that record alone, so they can run anywhere. What depends on the
records before it (exact and near duplicate lookups, counting, the split, writing) stays in the main process,
which receives the results in input order: the output is the same byte for byte with any number of workers.

Records go to the workers in chunks of CHUNK records or CHUNK_CHARS characters, with at most two chunks per
worker in flight, so that memory stays flat however large the input is. `prepare` starts a pool only for
inputs of at least SERIAL_BYTES (a small corpus is done before the workers would have started), and only on
Linux, where workers are forked.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

from owngpt.data.clean import CleanConfig, clean_message, clean_text
from owngpt.data.dedup import NearDedup, NearDedupConfig, normalise_for_dedup, text_key
from owngpt.data.records import Conversation, Document

CHUNK = 256  # records per task: big enough to amortise pickling, small enough to keep every worker busy
CHUNK_CHARS = 2_000_000  # ... and at most about this much text (MinHash needs ~40 bytes per character)
MAX_WORKERS = 8
SERIAL_BYTES = 4_000_000  # smaller inputs are cleaned in the main process

# What the work reads of one record: (document text, or a conversation's utterances joined when they are also
# used as a document; the conversation's message contents)
Job = tuple[str | None, list[str] | None]
# What one record's work gives back (tuples pickle faster than objects):
#   doc      clean_text(text) of a document, or of a conversation's utterances as a document: (out, changes, reason)
#   messages clean_message(content) per message of a conversation: [(out, changes), ...]
#   bands    the LSH band keys (np.uint64 row) of doc's cleaned text when it survived cleaning and near dedup is on
#   exact    its exact-dedup key (dedup.text_key) when it survived cleaning and exact dedup is on
Result = tuple[tuple | None, list | None, np.ndarray | None, int | None]

_state: dict[str, Any] = {}


def _init(clean_cfg: CleanConfig, near_cfg: NearDedupConfig | None, exact: bool) -> None:
    _state["clean"], _state["exact"] = clean_cfg, exact
    _state["near"] = NearDedup(near_cfg) if near_cfg is not None else None


def _init_worker(parent: int, clean_cfg: CleanConfig, near_cfg: NearDedupConfig | None, exact: bool) -> None:
    # Ctrl-C reaches the whole process group: the main process handles it and shuts the pool down, so workers
    # ignore it instead of each printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A main process that is killed (SIGTERM, SIGKILL, the OOM killer) shuts nothing down: have the kernel kill
    # this worker when its parent dies, instead of leaving it blocked on a pipe forever.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    _init(clean_cfg, near_cfg, exact)


def _job(rec, as_text: bool) -> Job:
    """The texts of one record the workers need: (document text or None, message contents or None)."""
    if isinstance(rec, Document):
        return rec.text, None
    if isinstance(rec, Conversation):
        contents = [m.get("content", "") for m in rec.messages]
        joined = "\n".join(t for t in contents if t.strip()) if as_text else None
        return joined, contents
    return None, None  # a Skip: nothing to do


def _work(jobs: list[Job]) -> list[Result]:
    cfg, near, exact = _state["clean"], _state["near"], _state["exact"]
    docs = [clean_text(text, cfg) if text is not None else None for text, _ in jobs]
    messages = [[clean_message(c, cfg) for c in contents] if contents is not None else None for _, contents in jobs]
    exact_keys: list[int | None] = [None] * len(jobs)
    band_keys: list[np.ndarray | None] = [None] * len(jobs)
    kept = [i for i, d in enumerate(docs) if d is not None and d[0] is not None]
    if kept and (exact or near is not None):
        norm = [normalise_for_dedup(docs[i][0]) for i in kept]  # once, for both dedup keys
        if exact:
            for i, t in zip(kept, norm):
                exact_keys[i] = text_key(t, normalised=True)
        if near is not None:  # one vectorised MinHash pass over the chunk
            for i, row in zip(kept, near.band_keys(near.signatures(norm, normalised=True))):
                band_keys[i] = row
    return list(zip(docs, messages, band_keys, exact_keys))


def default_workers() -> int:
    """One per CPU this process may run on, at most MAX_WORKERS."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return min(n, MAX_WORKERS)


def _chunks(records: Iterator, as_text: bool) -> Iterator[tuple[list, list[Job]]]:
    """(records, their jobs) in lists of at most CHUNK records and about CHUNK_CHARS characters."""
    recs: list = []
    jobs: list[Job] = []
    chars = 0
    for rec in records:
        job = _job(rec, as_text)
        recs.append(rec)
        jobs.append(job)
        chars += len(job[0] or "") + sum(map(len, job[1] or ()))
        if len(recs) >= CHUNK or chars >= CHUNK_CHARS:
            yield recs, jobs
            recs, jobs, chars = [], [], 0
    if recs:
        yield recs, jobs


def start_pool(workers: int, clean_cfg: CleanConfig, near_cfg: NearDedupConfig | None,
               exact: bool) -> ProcessPoolExecutor | None:
    """`workers` cleaning processes, or None where that is 1 or the platform cannot fork.

    Call it before the caller starts threads of its own: the workers are forked here, at once. fork copies only
    the calling thread, so a lock another thread held stays locked in the children; the workers run only
    Python string code, regexes and numpy, which take no lock of the threads other libraries may already run (a
    second prepare() in one process finds the tokenizer's thread pool). fork rather than spawn: spawn re-imports
    the user's __main__ in every worker, which breaks scripts without an `if __name__ == "__main__"` guard and
    code run from stdin.
    """
    if workers <= 1 or sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return None
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker,
                               initargs=(os.getpid(), clean_cfg, near_cfg, exact))
    pool.submit(int).result()  # with fork, the first task starts every worker
    return pool


def cleaned_records(records: Iterable, clean_cfg: CleanConfig, near_cfg: NearDedupConfig | None, exact: bool, *,
                    as_text: bool, pool: ProcessPoolExecutor | None = None, workers: int = 1
                    ) -> Iterator[tuple[Any, Job, Result]]:
    """Yield (record, job, result) for every record, in order: job is what the work read (the document text, or
    the conversation's utterances joined when as_text, and its message contents); Skip records come through
    with an empty job and result.

    pool: from start_pool(workers, ...) with the same settings, or None to do the work in this process.
    exact: compute exact-dedup keys too.
    """
    chunks = _chunks(iter(records), as_text)
    if pool is None:
        _init(clean_cfg, near_cfg, exact)
        for recs, jobs in chunks:
            yield from zip(recs, jobs, _work(jobs))
        return
    in_flight: deque[tuple[list, list[Job], Future]] = deque()
    while True:
        while len(in_flight) < 2 * workers and (chunk := next(chunks, None)):
            in_flight.append((*chunk, pool.submit(_work, chunk[1])))
        if not in_flight:
            return
        recs, jobs, fut = in_flight.popleft()
        yield from zip(recs, jobs, fut.result())
