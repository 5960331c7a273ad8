"""Batched decoding across requests, off the event loop: one scheduler thread steps a DecodeBatch per served model
(owngpt/generate/batch.py, THE sampling loop), so concurrent requests share every decode step.

A request becomes a `Job`: its prompts (one row per choice), its GenerationConfig and stop ids. Jobs wait in a
bounded queue (one more is a 429 with Retry-After) and join the batch between steps while it has room for their
rows (`max_batch`); a finished row leaves at once, freeing its place for the next step. The thread hands each
step's new text to the job's asyncio queue. The request side may `cancel()` a job at any time (the client went
away, or pressed Stop): a waiting job is never started, a running one leaves the batch before the next step. A job
still running after `request_timeout_s` ends with finish_reason "length".
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Collection

from owngpt.generate.batch import DecodeBatch, Group, RowEnd
from owngpt.generate.moderation import ContentFilter
from owngpt.generate.settings import GenerationConfig
from owngpt.serve.config import ServeConfig
from owngpt.serve.errors import APIError
from owngpt.serve.metrics import Metrics

log = logging.getLogger("owngpt.serve")


@dataclass
class Update:
    """New text of one choice (its row's index in the job), and how it ended once it has."""

    index: int
    text: str
    end: RowEnd | None


class Job:
    """One request's rows, and the asyncio queue their updates go to (lists of Update per step; an APIError; or
    None when the job is over)."""

    def __init__(self, model: str, prompts: list[list[int]], gen: GenerationConfig, stop_ids: Collection[int], *,
                 prompt_tokens: int, content_filter: ContentFilter | None = None) -> None:
        self.model, self.prompts, self.gen, self.stop_ids = model, prompts, gen, tuple(stop_ids)
        self.prompt_tokens = prompt_tokens  # as usage counts them: each distinct prompt once
        self.content_filter = content_filter
        self.loop: asyncio.AbstractEventLoop | None = None  # the request's, set by Scheduler.submit
        self.queue: asyncio.Queue = asyncio.Queue()
        self.arrived = time.monotonic()
        self.started: float | None = None  # when it joined the batch
        self.first_text: float | None = None
        self.cancelled = False
        self.group: Group | None = None

    @property
    def rows(self) -> int:
        return len(self.prompts)

    def cancel(self) -> None:
        """The answer is no longer wanted: it leaves the batch before the next step (never starts if waiting)."""
        self.cancelled = True

    def post(self, item: Any) -> None:
        """From the scheduler thread: hand `item` to the request's event loop."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled = True

    async def next(self, timeout: float | None = None) -> list[Any] | None:
        """The items that have arrived (each a list of Update, an APIError, or None at the end), waiting for the
        first; None when `timeout` passes first. Taking all that is there lets a busy stream write several steps
        at once."""
        try:
            items = [await asyncio.wait_for(self.queue.get(), timeout)]
        except asyncio.TimeoutError:
            return None
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


class Scheduler:
    """The decode thread: admits waiting jobs, steps every model's batch, and posts each job its new text."""

    def __init__(self, models: dict[str, Any], cfg: ServeConfig, metrics: Metrics) -> None:
        self.cfg, self.metrics = cfg, metrics
        self.batches = {name: DecodeBatch(m.reply.model, m.reply.tokenizer) for name, m in models.items()}
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []
        self.cond = threading.Condition()
        self.closed = True
        self.thread: threading.Thread | None = None
        self.open()

    # ------------------------------------------------------------------ the request side

    def submit(self, job: Job) -> None:
        """Queue `job` (called on the request's event loop), or raise a 429 (Retry-After) when `queue_size` jobs are
        already waiting."""
        job.loop = asyncio.get_running_loop()
        with self.cond:
            if self.closed:
                raise APIError(503, "the server is shutting down", code="unavailable", headers={"Retry-After": "5"})
            waiting = self._must_wait(self.waiting + collections.deque([job]))
            if waiting > self.cfg.queue_size:
                self.metrics.rejected += 1
                raise APIError(429, f"the server is busy: {waiting - 1} requests are waiting for a place (at most "
                               f"{self.cfg.queue_size}); retry in a moment", code="queue_full",
                               headers={"Retry-After": "1"})
            self.waiting.append(job)
            self.cond.notify()

    def _must_wait(self, jobs: collections.deque) -> int:
        """How many of `jobs` (in order) would not find room in the batch at the next step."""
        room = self.cfg.max_batch - sum(j.rows for j in self.running)
        blocked = 0
        for job in jobs:
            if blocked or job.rows > room:
                blocked += 1
            else:
                room -= job.rows
        return blocked

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def rows_running(self) -> int:
        return sum(len(b) for b in self.batches.values())

    def open(self) -> None:
        """Start the decode thread (again, after `close`)."""
        with self.cond:
            if not self.closed:
                return
            self.closed = False
            self.thread = threading.Thread(target=self._loop, name="owngpt-decode", daemon=True)
            self.thread.start()

    def close(self) -> None:
        """Stop the decode thread; jobs still waiting or running get a 503."""
        with self.cond:
            self.closed = True
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout=10)

    # ------------------------------------------------------------------ the decode thread

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.closed and not self.waiting and not self.running:
                    self.cond.wait()
                if self.closed:
                    break
                admitted = self._take_waiting()
            try:
                for job in admitted:
                    self._admit(job)
                self._reap()
                for name, batch in self.batches.items():
                    if len(batch):
                        self._dispatch(batch.step())
            except Exception as e:  # a bug: every running job gets a 500, the thread lives on
                log.exception("decoding failed")
                self._fail_all(e)
        with self.cond:
            ended, self.running = [*self.waiting, *self.running], []
            self.waiting.clear()
        for job in ended:
            if job.group is not None and not job.group.done:
                self.batches[job.model].cancel(job.group, "cancelled")
            job.post(APIError(503, "the server is shutting down", code="unavailable"))
            job.post(None)

    def _take_waiting(self) -> list[Job]:
        """Jobs that fit in the batch now, first come first served (cancelled ones are dropped); they count as
        running from here on. Called with the lock held."""
        room = self.cfg.max_batch - sum(j.rows for j in self.running)
        taken = []
        while self.waiting:
            job = self.waiting[0]
            if job.cancelled:
                self.waiting.popleft().post(None)
                continue
            if job.rows > room:
                break
            room -= job.rows
            taken.append(self.waiting.popleft())
        self.running += taken
        return taken

    def _admit(self, job: Job) -> None:
        batch = self.batches[job.model]
        try:
            job.group = batch.add(job.prompts, job.gen, stop_ids=job.stop_ids, content_filter=job.content_filter,
                                  tag=job)
        except Exception as e:  # the request was checked: this is a bad prompt the checks missed
            with self.cond:
                self.running.remove(job)
            job.post(APIError(400, str(e), code="invalid_prompt"))
            job.post(None)
            return
        job.started = time.monotonic()

    def _reap(self) -> None:
        """Cancelled jobs leave the batch; jobs past their time end with "length"."""
        now = time.monotonic()
        for job in list(self.running):
            if job.cancelled:
                self.metrics.cancelled += 1
                self._dispatch(self.batches[job.model].cancel(job.group, "cancelled"))
            elif now - job.started > self.cfg.request_timeout_s:
                self._dispatch(self.batches[job.model].cancel(job.group, "length"))

    def _dispatch(self, pieces: list) -> None:
        by_job: dict[int, tuple[Job, list[Update]]] = {}
        for piece in pieces:
            job = piece.row.group.tag
            by_job.setdefault(id(job), (job, []))[1].append(Update(piece.row.index, piece.text, piece.end))
        now = time.monotonic()
        for job, updates in by_job.values():
            if job.first_text is None and any(u.text for u in updates):
                job.first_text = now
                self.metrics.first_token(now - job.arrived)
            job.post(updates)
            if job.group.done:
                with self.cond:
                    self.running.remove(job)
                self.metrics.finished(job.prompt_tokens, sum(r.end.tokens for r in job.group.rows))
                job.post(None)

    def _fail_all(self, error: Exception) -> None:
        for job in self.running:
            job.post(APIError(500, f"generation failed ({type(error).__name__}); the server log has the details",
                              code="internal_error"))
            job.post(None)
        with self.cond:
            self.running = []
        self.batches = {name: DecodeBatch(b.model, b.tokenizer) for name, b in self.batches.items()}
