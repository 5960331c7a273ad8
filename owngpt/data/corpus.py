"""THE reader of a folder written by `owngpt prepare`: whether a folder is one, and its docs/conversations per split.

A finished folder holds docs/{split}.jsonl ({"id", "source", "text"}), conversations/{split}.jsonl ({"id",
"source", "messages"}), tokenizer/, tokens/, report.json and, written last, manifest.json (owngpt/data/prepare.py).
So manifest.json is what makes a folder prepared: a run that failed or was interrupted leaves the rest without it.
Such an unfinished folder is neither prepared data nor raw input (read as raw files it would mix train, val and
test), and the readers here refuse it with a message that says to re-run prepare. Both tests (`is_prepared`,
`is_unfinished`) live in owngpt/data/prepared.py, shared with the input walker.

`corpus_texts` gives training text for a tokenizer from a prepared folder or from raw sources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from owngpt.data.clean import Cleaner
from owngpt.data.prepared import KINDS, is_prepared, is_unfinished
from owngpt.data.raw import cleaned
from owngpt.data.records import Conversation, Document, Skip
from owngpt.data.report import Report
from owngpt.data.sources import read_sources
from owngpt.errors import OwnGPTError

FIELDS = {"docs": "text", "conversations": "messages"}  # the field every line of that kind has


def refuse_unfinished(path: str | Path) -> None:
    """OwnGPTError when `path` is an unfinished prepare folder (see is_unfinished); nothing otherwise."""
    if is_unfinished(path):
        raise OwnGPTError(f"{path} is an unfinished `owngpt prepare` folder: it has no manifest.json (the run failed "
                          "or was interrupted; see its report.json if there is one); run `owngpt prepare` again")


class PreparedLine(NamedTuple):
    """One non-blank line of a prepared split file: its parsed record, or the problem that made it unusable."""

    file: Path
    lineno: int
    record: dict[str, Any] | None  # None when `problem` says what is wrong
    problem: str = ""

    @property
    def loc(self) -> str:
        return f"{self.file}:{self.lineno}"


def split_file(folder: str | Path, kind: str, split: str) -> Path:
    """DIR/{kind}/{split}.jsonl, kind 'docs' or 'conversations'."""
    if kind not in FIELDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return Path(folder) / kind / f"{split}.jsonl"


def read_split(folder: str | Path, kind: str, split: str) -> Iterator[PreparedLine]:
    """Every non-blank line of DIR/{kind}/{split}.jsonl, streamed; a missing file yields nothing. A line that is not
    JSON, or not an object with the kind's field ('text' or 'messages'), comes with its problem instead."""
    path = split_file(folder, kind, split)
    if not path.is_file():
        return
    name = FIELDS[kind]
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield PreparedLine(path, lineno, None, f"invalid JSON: {e.msg}")
                continue
            if not isinstance(obj, dict) or name not in obj:
                yield PreparedLine(path, lineno, None, f"missing field '{name}'")
            else:
                yield PreparedLine(path, lineno, obj)


def split_texts(folder: str | Path, split: str, kinds: Sequence[str] = KINDS) -> Iterator[str]:
    """The texts of one split: each document's text, then the content of every message of each conversation.
    A line without them raises OwnGPTError with its file:line; so does a split with no file of `kinds` at all."""
    if not any(split_file(folder, kind, split).is_file() for kind in kinds):
        wanted = " nor ".join(f"{kind}/{split}.jsonl" for kind in kinds)
        raise OwnGPTError(f"{folder}: prepared folder has {'neither' if len(kinds) > 1 else 'no'} {wanted}")
    for kind in kinds:
        for line in read_split(folder, kind, split):
            texts = _line_texts(kind, line.record)
            if texts is None:
                raise OwnGPTError(f"{line.loc}: expected {{'text': ...}} or {{'messages': [...]}}")
            yield from texts


def _line_texts(kind: str, record: dict[str, Any] | None) -> list[str] | None:
    try:
        if kind == "docs":
            return [record["text"]]  # type: ignore[index]
        return [m["content"] for m in record["messages"]]  # type: ignore[index]
    except (KeyError, TypeError):  # no record, or messages that are not a list of objects with content
        return None


def corpus_texts(spec_or_prepared_dir: str | Path | Sequence[str | Path], *, split: str = "train",
                 cleaner: Cleaner | None = None, report: Report | None = None,
                 exclude: Sequence[str | Path] = ()) -> Iterator[str]:
    """Training text for a tokenizer: from a folder written by `owngpt prepare` (its `split`: documents' text and
    the message contents of its conversations), or else from raw sources via owngpt.data.sources.read_sources,
    cleaned and scrubbed as prepare does (owngpt/data/raw.py; counted in `cleaner`, or in `report`'s cleaner):
    documents' text and conversations' message contents. Skipped records (and the inputs the walker left out:
    pipes, broken links, other file types) are counted in `report` as prepare counts them, or else left out.
    `exclude`: folders never read (the output)."""
    specs = [spec_or_prepared_dir] if isinstance(spec_or_prepared_dir, (str, Path)) else list(spec_or_prepared_dir)
    if len(specs) == 1 and is_prepared(specs[0]):
        return split_texts(specs[0], split)  # a generator: files are checked when the first text is asked for
    for spec in specs:
        refuse_unfinished(spec)
    records = read_sources([str(s) for s in specs], exclude=exclude)  # raises now for a missing path or builtin
    return _record_texts(cleaned(records, report.cleaner if report is not None else cleaner), report)


def _record_texts(records: Iterable[Any], report: Report | None) -> Iterator[str]:
    for r in records:
        if isinstance(r, Document):
            yield r.text
        elif isinstance(r, Conversation):
            for m in r.messages:
                yield m["content"]
        elif isinstance(r, Skip) and report is not None:
            report.skip(r)
