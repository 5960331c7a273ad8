"""The records `prepare` keeps, written per split: DIR/{docs,conversations}/{split}.jsonl, and tail mode's cut.

Each split file is written to a `.tmp` file, fsynced and renamed into place by SplitWriters.commit().
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from owngpt.data.split import SPLITS, tail_cut
from owngpt.io import TMP_SUFFIX, commit_file


def record_id(text: str) -> str:
    """The "id" of a written record: a short hash of its text (or of its conversation's JSON)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class SplitWriters:
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
            commit_file(self.folder / f"{s}.jsonl{TMP_SUFFIX}", self.folder / f"{s}.jsonl")
        return moved


def tail_assign(path: Path, docs: SplitWriters, total_chars: int, fraction: float) -> None:
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
                    docs.write("train", {**obj, "id": record_id(head), "text": head}, 0.0, len(head))
                if tail:
                    docs.write("val", {**obj, "id": record_id(tail), "text": tail}, 0.0, len(tail))
            seen += len(text)
