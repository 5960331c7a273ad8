"""What a folder written by `owngpt prepare` looks like, finished or not: the one test every reader and the input
walker use.

prepare writes DIR/docs/{split}.jsonl and DIR/conversations/{split}.jsonl through `.tmp` files renamed into place,
then tokenizer/, tokens/, report.json and, last, manifest.json (owngpt/data/prepare.py). So:

- finished (`is_prepared`): manifest.json beside docs/ or conversations/;
- unfinished (`is_unfinished`): docs/ or conversations/ but no manifest.json, and something only prepare leaves:
  report.json (a run that failed, or kept nothing), a split file still named `*.jsonl.tmp` (a run interrupted while
  reading), or tokens/ (one interrupted while tokenizing). A plain folder of JSONL files named docs/ or
  conversations/ is neither.

Neither kind is raw input: read as raw files, a prepared folder would mix its train, val and test splits into
another run's.
"""

from __future__ import annotations

from pathlib import Path

from owngpt.io import TMP_SUFFIX

KINDS = ("docs", "conversations")


def _has_kinds(p: Path) -> bool:
    return any((p / kind).is_dir() for kind in KINDS)


def is_prepared(path: str | Path) -> bool:
    """True for a folder that `owngpt prepare` finished: manifest.json (written last) beside docs/ or conversations/."""
    p = Path(path)
    return (p / "manifest.json").is_file() and _has_kinds(p)


def is_unfinished(path: str | Path) -> bool:
    """True for what a failed or interrupted `owngpt prepare` left (see the module docstring)."""
    p = Path(path)
    if (p / "manifest.json").is_file() or not _has_kinds(p):
        return False
    if (p / "report.json").is_file() or (p / "tokens").is_dir():
        return True
    return any(next((p / kind).glob(f"*.jsonl{TMP_SUFFIX}"), None) is not None for kind in KINDS if (p / kind).is_dir())


def prepare_output(path: str | Path) -> str | None:
    """'finished' or 'unfinished' for a folder `owngpt prepare` wrote (see the module docstring), else None."""
    if is_prepared(path):
        return "finished"
    return "unfinished" if is_unfinished(path) else None
