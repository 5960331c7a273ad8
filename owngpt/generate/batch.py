"""THE sampling loop, as a batch that rows join and leave between decode steps (continuous batching).

`DecodeBatch.add(prompts, cfg)` adds a *group* of rows: one GenerationConfig and one random generator seeded with
cfg.seed, shared by the group's rows and by nothing else. Each `step()` runs one forward pass for every running row
of every group (owngpt/generate/runner.py), processes and samples every row's next token in one pass of the logits
chain (owngpt/generate/processors.py: each row with its own group's settings, and its own uniform number drawn
from its group's generator), and returns the new text of each row (`Piece`s): complete UTF-8 characters only, never
a stop string, a content-filter match or the start of one (owngpt/generate/text.py). So a group's tokens depend only
on its prompts, settings and seed, never on what else shares the batch: `generate_ids` runs one group to the end,
and the server (owngpt/serve) steps many requests' groups together.

A row ends (`RowEnd.reason`) at a stop id or stop string ("stop"), at max_new_tokens or when its sequence fills
the context ("length"), at a content-filter match ("content_filter"), or when the caller cancels its group. An
ended row leaves the batch and the KV cache at once, so a finished or cancelled request frees its place for the
next step.

Not handled: beam search (owngpt/generate/engine.py runs it on the same runner), chunked prefill (a joining
group's prompts are run in one forward pass, which the other rows wait for), several LoRA adapters in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Sequence

import torch

from owngpt.allocator import keep_freed_memory
from owngpt.generate.moderation import ContentFilter
from owngpt.generate.processors import LogitsChain, never_sampled, uniforms_for
from owngpt.generate.runner import Runner, device_of, inference, prepare_prompts, step_limit
from owngpt.generate.settings import GenerationConfig
from owngpt.generate.text import TextTracker


@dataclass
class RowEnd:
    """How a row ended, as the OpenAI API reports it."""

    reason: str  # "stop" | "length" | "content_filter" | "cancelled" (or the reason given to cancel)
    tokens: int  # tokens sampled, a final stop id included


class Row:
    """One generated sequence: its prompt, the ids it emitted (stop ids left out), its text, and how it ended."""

    def __init__(self, group: "Group", index: int, prompt: list[int], limit: int, tracker: TextTracker | None) -> None:
        self.group, self.index, self.prompt, self.limit, self.tracker = group, index, prompt, limit, tracker
        self.ids: list[int] = []
        self.sampled = 0
        self.shown = 0  # characters of the text already handed out in pieces
        self.end: RowEnd | None = None
        self.slot = -1  # its place in the batch during a step

    @property
    def text(self) -> str:
        """The text so far (all of it once the row has ended), cut before a stop string or filtered match."""
        return self.tracker.result() if self.tracker is not None else ""


@dataclass
class Piece:
    """New text of one row after a step (possibly empty), and its end when it has just ended."""

    row: Row
    text: str
    end: RowEnd | None


class Group:
    """Rows added together; `tag` is the caller's (e.g. the request they answer)."""

    def __init__(self, cfg: GenerationConfig, stop_ids: Collection[int], generator: torch.Generator | None,
                 tag: Any) -> None:
        self.cfg, self.stop_ids, self.generator, self.tag = cfg, {int(s) for s in stop_ids}, generator, tag
        self.rows: list[Row] = []
        self.active: list[Row] = []  # running rows, in the batch's order

    @property
    def done(self) -> bool:
        return not self.active


class DecodeBatch:
    """Running rows of one model. `tokenizer` (optional) makes text, stop strings and the content filter
    available and keeps ids outside its vocabulary (and <|pad|>, <|reserved_*|>) from being sampled."""

    def __init__(self, model, tokenizer=None, *, use_cache: bool = True, capacity: int | None = None) -> None:
        keep_freed_memory()  # decoding steps reuse freed memory instead of faulting it in again
        self.model, self.tokenizer = model, tokenizer
        self.device = device_of(model)
        self.runner = Runner(model, use_cache, capacity)
        self.never = never_sampled(model.cfg.vocab_size, tokenizer, self.device)
        self.rows: list[Row] = []  # running rows, in the runner's (and the chain's) order
        self.groups: list[Group] = []  # groups with running rows
        self.chain: LogitsChain | None = None  # every running row's processors and settings
        self.pending = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,) each row's next token to feed

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, prompts: Sequence[Sequence[int]], cfg: GenerationConfig, *, stop_ids: Collection[int] = (),
            content_filter: ContentFilter | None = None, tag: Any = None) -> Group:
        """Start one row per prompt. A bad prompt (empty, too long, ids outside the vocabulary) raises here and
        adds nothing. Runs the prompts' prefill now; their first tokens come with the next `step`."""
        prompts = prepare_prompts(self.model, prompts, cfg, self.tokenizer)
        generator = None if cfg.seed is None else torch.Generator(device=self.device).manual_seed(cfg.seed)
        chain = LogitsChain(cfg, prompts, self.model.cfg.vocab_size, self.never, self.device)
        group = Group(cfg, stop_ids, generator, tag)
        for i, p in enumerate(prompts):
            tracker = TextTracker(self.tokenizer, cfg.stop, content_filter) if self.tokenizer is not None else None
            group.rows.append(Row(group, i, p, step_limit(self.model, len(p), cfg), tracker))
        with inference(self.model):
            self.runner.join(prompts)
        if self.chain is None:
            self.chain = chain
        else:
            self.chain.extend(chain)
        group.active = list(group.rows)
        self.rows += group.rows
        self.groups.append(group)
        last = torch.tensor([p[-1] for p in prompts], dtype=torch.long, device=self.device)
        self.pending = torch.cat([self.pending, last])
        return group

    def step(self) -> list[Piece]:
        """One decode step for every running row: the pieces of the rows with new text or an end."""
        if not self.rows:
            return []
        with inference(self.model):
            logits = self.runner.step(self.pending)  # (B, V)
        for slot, row in enumerate(self.rows):
            row.slot = slot
        uniforms = torch.zeros(len(self.rows), device=self.device)
        for group in self.groups:  # each group's rows draw from its own generator, in row order
            if group.cfg.temperature > 0:
                slots = [r.slot for r in group.active]
                uniforms[slots] = uniforms_for(len(slots), group.cfg, group.generator, self.device)
        tokens = self.chain.sample(self.chain(logits), uniforms)  # (B,)
        self.chain.advance(tokens)
        pieces = [p for row, t in zip(self.rows, tokens.tolist()) if (p := self._take(row, t)) is not None]
        self._leave(tokens)
        return pieces

    def cancel(self, group: Group, reason: str = "cancelled") -> list[Piece]:
        """End the group's running rows now (their text so far is theirs); they leave the batch."""
        pieces = [self._end(row, reason) for row in group.active]
        self._leave(self.pending)
        return pieces

    def _take(self, row: Row, token: int) -> Piece | None:
        row.sampled += 1
        if token in row.group.stop_ids:
            return self._end(row, "stop")
        row.ids.append(token)
        tracker = row.tracker
        if tracker is not None:
            tracker.feed(token)
            if tracker.stopped:
                return self._end(row, tracker.reason)
        if row.sampled >= row.limit:  # its budget is spent, or its sequence fills the context
            return self._end(row, "length")
        if tracker is None:
            return None
        end = tracker.safe_end()
        if end <= row.shown:
            return None
        text, row.shown = tracker.text[row.shown:end], end
        return Piece(row, text, None)

    def _end(self, row: Row, reason: str) -> Piece:
        row.end = RowEnd(reason, row.sampled)
        if row.tracker is None:
            return Piece(row, "", row.end)
        row.tracker.finish()
        if row.tracker.reason == "content_filter" and reason != "content_filter":
            row.end.reason = "content_filter"  # the filter caught the end of the text only once it was final
        text = row.tracker.result()
        piece = Piece(row, text[row.shown:], row.end)
        row.shown = max(row.shown, len(text))
        return piece

    def _leave(self, tokens: torch.Tensor) -> None:
        """Ended rows leave the runner, their group's chain and the batch; `tokens` become the rows' next input."""
        keep = [i for i, row in enumerate(self.rows) if row.end is None]
        if len(keep) < len(self.rows):
            self.runner.keep(keep)
            self.chain.select(keep)
            for group in self.groups:
                group.active = [r for r in group.active if r.end is None]
            self.groups = [g for g in self.groups if g.active]
            self.rows = [self.rows[i] for i in keep]
        if len(keep) == len(tokens):  # every row runs on (most steps): no gather
            self.pending = tokens
            return
        self.pending = tokens[torch.tensor(keep, dtype=torch.long, device=self.device)] if keep else tokens[:0]
