"""THE input walker: which files a spec (a file, a folder, a glob) names, and what it leaves out and why.

`prepare`, `tokenizer train` and the fingerprint of a prepare run all list their inputs through `expand`, so
they agree on what was read. The rules:

- Hidden files and folders (a name starting with ".") are left out without a word, as before.
- Only regular files are read. A named pipe, socket or device file is reported ("not a regular file (named
  pipe)"), never opened: opening a pipe would wait forever for a writer.
- A broken symbolic link is reported ("broken symbolic link").
- Symbolic links to folders are followed, each real folder read once: a link back into a folder already read
  (a loop, or a second way to the same folder) is reported instead of read again.
- Folders given in `exclude` (the run's own output folder) are reported and not entered, and so is any folder
  `owngpt prepare` wrote, finished or not (owngpt/data/prepared.py: manifest.json, or report.json, `*.jsonl.tmp`
  split files or tokens/, beside docs/ or conversations/): its docs/*.jsonl read as raw input would mix another
  run's train, val and test splits into this one.
"""

from __future__ import annotations

import os
import stat
from glob import glob
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from owngpt.data.prepared import prepare_output
from owngpt.errors import OwnGPTError


class Entry(NamedTuple):
    """One thing a spec names: a file to read (reason None), or a path left out with the reason. `folder` is the
    folder of the spec it was found in by walking (None for a file named directly or by a glob)."""

    path: Path
    reason: str | None = None
    folder: Path | None = None


_KINDS = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"))


def _unreadable(path: Path) -> str | None:
    """Why `path` (not a folder) is not read, or None for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return "broken symbolic link"
        return "vanished while being listed"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "special file")
    return f"not a regular file ({kind})"


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _walk(folder: Path, excluded: set[str]) -> Iterator[Entry]:
    """Files under `folder`, depth first in sorted order, with the rules of the module docstring."""
    seen: set[str] = set()

    def visit(d: Path) -> Iterator[Entry]:
        real = _real(d)
        if real in excluded:
            yield Entry(d, "the output folder of this run (left out)", folder)
            return
        state = prepare_output(d) if d != folder else None
        if state is not None:
            what = "a folder written by `owngpt prepare`" if state == "finished" else \
                "an unfinished `owngpt prepare` folder"
            yield Entry(d, f"{what} (left out: it holds another run's splits)", folder)
            return
        if real in seen:
            yield Entry(d, "symbolic link to a folder already read (left out)", folder)
            return
        seen.add(real)
        try:
            names = sorted(os.listdir(d))
        except OSError as e:
            yield Entry(d, f"folder cannot be listed ({e.strerror or e})", folder)
            return
        for name in names:
            if name.startswith("."):
                continue
            p = d / name
            if os.path.isdir(p):  # follows links: a link to a folder is a folder
                yield from visit(p)
            else:
                yield Entry(p, _unreadable(p), folder)

    yield from visit(folder)


def expand(target: str, *, exclude: Sequence[str | Path] = ()) -> tuple[list[Entry], list[Path]]:
    """(everything `target` (a file, folder or glob) names, in reading order; the folders among them that were
    walked). Raises OwnGPTError for a path that does not exist or a glob that matches nothing (so a typo fails
    before any work)."""
    excluded = {_real(Path(e)) for e in exclude}
    if os.path.lexists(target) and not os.path.exists(target):  # first: a real name such as "notes[1].txt"
        return [Entry(Path(target), _unreadable(Path(target)))], []
    if os.path.exists(target):
        paths = [Path(target)]
    elif any(c in target for c in "*?["):
        paths = [Path(p) for p in sorted(glob(target, recursive=True))]
        if not paths:
            raise OwnGPTError(f"{target}: no files match this pattern")
    else:
        raise OwnGPTError(f"{target}: no such file or folder")
    out: list[Entry] = []
    folders: list[Path] = []
    for p in paths:
        if os.path.isdir(p):
            folders.append(p)
            out.extend(_walk(p, excluded))
        elif any(_real(p).startswith(e + os.sep) for e in excluded):
            out.append(Entry(p, "inside the output folder of this run (left out)"))
        else:
            out.append(Entry(p, _unreadable(p)))
    return out, folders
