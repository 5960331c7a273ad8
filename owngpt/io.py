"""The one durable writer: every file the project writes goes to a temp name, is fsynced, then renamed (no torch);
and `output_dir`, the one check and creation of the folder a verb writes into.

A file is written to `NAME.tmp` (or a temp name of the caller's), flushed and fsynced, then renamed over
`NAME`, and the folder is fsynced, so a reader (or a run resumed after a crash) sees the old content or the new
one, never a part. Folders (checkpoints) are published the same way: every file in a temp folder is fsynced,
then the folder is renamed into place (`publish_dir`).

Every file written here gets the mode a plain open() would give it (0o666 less the process umask, so 0o644
usually), whatever the writer did: safetensors' save_file, for one, creates its file 0o600.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable

from owngpt.errors import OwnGPTError

TMP_SUFFIX = ".tmp"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_file(path: str | Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside `path` durable (a no-op where folders cannot be opened, e.g. Windows, where
    rename is atomic anyway)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and folder below `root` (before a folder is renamed into place)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fsync_file(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


def current_umask() -> int:
    """The process umask. Linux shows it in /proc/self/status; elsewhere it is read by setting and restoring it
    (os.umask has no read-only form)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the umask (0o644 under the usual umask 0o022)."""
    return 0o666 & ~current_umask()


def commit_file(tmp: str | Path, final: str | Path) -> None:
    """Make a finished temp file durable and move it over `final` (atomic within one file system), with the
    mode `file_mode()` gives, whatever mode the writer created it with."""
    tmp, final = Path(tmp), Path(final)
    os.chmod(tmp, file_mode())
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Durably (re)write `path` with `write(tmp_path)`, a function that creates the temp file (e.g. safetensors'
    save_file); the temp file is removed if `write` fails."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        write(tmp)
        commit_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a file so that readers see the old content or the new one, never a part."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file so that readers see the old content or the new one, never a part."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def publish_dir(tmp: str | Path, final: str | Path) -> None:
    """Move a finished (fsynced) temp folder into place; an existing folder of that name is replaced. The old one is
    first renamed to `.old-NAME-PID`; a reader that finds it without NAME (the process died between the two renames)
    puts it back (owngpt.checkpoint.format does)."""
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def output_dir(path: str | Path, *, create: bool = True) -> Path:
    """`path` as a folder to write into (every verb's --out): OwnGPTError, a one-line message, when it or a folder
    above it exists as something other than a folder, or cannot be created; created with its parents when
    `create`. Verbs call it with create=False before their work, so a mistake costs nothing."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.is_dir():  # follows links: those above an existing folder are folders
            break
        if os.path.lexists(q):
            what = "a broken symbolic link" if os.path.islink(q) and not q.exists() else "a file"
            where = f"it is {what}" if q == p else f"{q} is {what}"
            raise OwnGPTError(f"cannot write into {p}: {where}, not a folder; name a new or existing folder "
                              "(--out) instead")
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OwnGPTError(f"cannot create the folder {p}: {e.strerror or e}") from None
    return p
