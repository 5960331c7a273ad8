"""`prepare`'s pass over the cleaned records: count the cleaning, drop duplicates, choose each record's split, write it.

Documents: the cleaning result counted → exact dedup → near dedup (in batches of NEAR_BATCH) → split by a hash of
the text (or, in tail mode, by position in reading order) → DIR/docs. Conversations: each message's cleaning
counted → checked (owngpt/data/conversations.check_conversation) → exact dedup → split by a hash of the whole
conversation → DIR/conversations. Every record read is counted in the Report, kept or removed with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from owngpt.data.conversations import check_conversation
from owngpt.data.dedup import ExactDedup, NearDedup, NearDedupConfig
from owngpt.data.encoding import converted_from
from owngpt.data.pii import scrubbed
from owngpt.data.records import Conversation, Document, Skip
from owngpt.data.report import Progress, Report
from owngpt.data.split import conversation_key, split_of, unit_hash
from owngpt.data.split_files import SplitWriters, record_id, tail_assign
from owngpt.io import TMP_SUFFIX

if TYPE_CHECKING:
    from owngpt.data.prepare import PrepareConfig

NEAR_BATCH = 256  # documents looked up in the near-dedup index at once
PROGRESS_EVERY = 2000  # records between progress updates


class RecordPass:
    """One pass over the (record, job, result) triples of workers.cleaned_records; `run()` returns the counts.

    sink(split, text), when given, also receives every kept document in the order it is written."""

    def __init__(self, out: Path, cfg: PrepareConfig, ratios: tuple[float, float, float], rep: Report,
                 near_cfg: NearDedupConfig | None, sink: Callable[[str, str], None] | None = None) -> None:
        self.cfg, self.ratios, self.rep, self.sink = cfg, ratios, rep, sink
        self.cleaner = rep.cleaner
        self.exact_docs = ExactDedup() if cfg.dedup else None
        self.exact_convs = ExactDedup() if cfg.dedup else None
        self.near = NearDedup(near_cfg) if near_cfg is not None else None
        self.docs = SplitWriters(out / "docs")
        self.convs = SplitWriters(out / "conversations")
        self.tail_path = out / "docs" / f"_all.jsonl{TMP_SUFFIX}"
        self.tail_tmp = open(self.tail_path, "w", encoding="utf-8") if cfg.split_mode == "tail" else None
        self.tail_chars = 0
        # documents waiting for the near-dedup lookup: (text, source, loc, split key, counter kind, band keys)
        self.pending: list[tuple[str, str, str, str, str, Any]] = []
        self.n_bytes = 0
        self.read = 0

    def run(self, cleaned: Iterable[tuple[Any, Any, Any]], ui: Progress) -> dict[str, Any]:
        task = ui.task("read, clean, dedup", total=None)
        for rec, job, result in cleaned:
            if isinstance(rec, Skip):
                self.rep.skip(rec)
                continue
            if self.cfg.max_documents and self.read >= self.cfg.max_documents:
                break
            self.read += 1
            self._count_record(rec)
            if isinstance(rec, Document):
                self.n_bytes += len(rec.text.encode("utf-8", "surrogatepass"))
                self._document(rec.text, result, rec.source, rec.loc, None, "documents")
            elif isinstance(rec, Conversation):
                self._conversation(rec, job, result)
            if self.read % PROGRESS_EVERY == 0:
                ui.advance(task, PROGRESS_EVERY, f"{self.n_bytes / 1e6:.1f} MB")
        self._flush()
        ui.advance(task, self.read % PROGRESS_EVERY, f"{self.n_bytes / 1e6:.1f} MB")
        return self._commit()

    # ------------------------------------------------------------------ one record

    def _count_record(self, rec: Document | Conversation) -> None:
        enc = converted_from(rec.loc)
        if enc:
            self.rep.converted[enc] = self.rep.converted.get(enc, 0) + 1
        self.rep.source(rec.source)["records"] += 1

    def _document(self, text: str, result: tuple, source: str, loc: str, split_key: str | None, kind: str) -> None:
        """A document (or a conversation used as text): counted, exact-deduplicated, queued for near dedup."""
        doc_result, _, keys, exact_key = result
        s = self.rep.source(source)[kind]
        s["in"] += 1
        out_text, changed = self.cleaner.account(text, loc, doc_result)
        if out_text is None:
            s["removed"] += 1
            return
        if self.exact_docs is not None and self.exact_docs.seen_key(exact_key):
            s["removed"] += 1
            self.cleaner.note("exact_dup", loc, out_text, None)
            return
        if changed:
            s["changed"] += 1
        self.pending.append((out_text, source, loc, split_key or out_text, kind, keys))
        if len(self.pending) >= NEAR_BATCH:
            self._flush()

    def _conversation(self, rec: Conversation, job: tuple, result: tuple) -> None:
        doc_text, contents = job
        c = self.rep.source(rec.source)["conversations"]
        c["in"] += 1
        self.n_bytes += sum(len(t.encode("utf-8", "surrogatepass")) for t in contents)
        messages, changed = [], False
        for m, raw, message_result in zip(rec.messages, contents, result[1]):
            content, ch = self.cleaner.account_message(raw, rec.loc, message_result)
            changed |= ch
            messages.append({"role": m.get("role"), "content": content})
        key = conversation_key(messages)
        ok, reason = check_conversation(messages)
        if ok is None:
            c["removed"] += 1
            self.cleaner.note("invalid_conversation", rec.loc, f"{reason}: {key}", None)
        elif self.exact_convs is not None and self.exact_convs.seen(key):
            c["removed"] += 1
            self.cleaner.note("exact_dup_conversation", rec.loc, key, None)
        else:
            c["kept"] += 1
            c["changed"] += int(changed)
            u = unit_hash(key)
            self.convs.write(split_of(u, self.ratios), {"id": record_id(key), "source": scrubbed(rec.source),
                                                        "messages": ok}, u)
        if self.cfg.conversations_as_text:  # doc_text: the utterances joined (workers._job)
            self._document(doc_text, result, rec.source, rec.loc, key, "conversations_as_text")

    # ------------------------------------------------------------------ kept documents

    def _flush(self) -> None:
        """Near-dedup the queued documents as one batch; write the ones that are not duplicates."""
        if self.near is not None and self.pending:
            dup = self.near.duplicates_of_keys(np.stack([p[5] for p in self.pending]))
        else:
            dup = [False] * len(self.pending)
        for (text, source, loc, split_key, kind, _), d in zip(self.pending, dup):
            if d:
                self.rep.source(source)[kind]["removed"] += 1
                self.cleaner.note("near_dup", loc, text, None)
            else:
                self._emit(text, source, split_key, kind)
        self.pending.clear()

    def _emit(self, text: str, source: str, split_key: str, kind: str) -> None:
        self.rep.source(source)[kind]["kept"] += 1
        obj = {"id": record_id(text), "source": scrubbed(source), "text": text}
        if self.tail_tmp is not None:  # tail mode: the split waits for the total length (_commit)
            self.tail_tmp.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self.tail_chars += len(text)
            return
        u = unit_hash(split_key)
        split = split_of(u, self.ratios)
        self.docs.write(split, obj, u, len(text))
        if self.sink is not None:
            self.sink(split, text)

    def _commit(self) -> dict[str, Any]:
        """Rename the split files into place (an empty val split gets one train record); the pass's counts."""
        ensure_val = self.ratios[1] > 0
        moved = {}
        if self.tail_tmp is not None:
            self.tail_tmp.close()
            moved["documents"] = False
            tail_assign(self.tail_path, self.docs, self.tail_chars, self.cfg.tail)
            self.tail_path.unlink()
            self.docs.commit(ensure_val=False)
        else:
            moved["documents"] = self.docs.commit(ensure_val=ensure_val)
        moved["conversations"] = self.convs.commit(ensure_val=ensure_val)
        return {"docs": dict(self.docs.counts), "convs": dict(self.convs.counts), "doc_chars": dict(self.docs.chars),
                "bytes": self.n_bytes, "moved": moved}
