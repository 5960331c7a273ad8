"""What identifies a `prepare` run (its inputs, settings and versions) and the stored report of an up-to-date folder.

The fingerprint hashes the inputs (path, size and mtime of every file; the version of the package behind each
builtin:NAME), the config, the given tokenizer's hash, owngpt's version and PIPELINE_VERSION. When it equals the
one in a valid manifest, prepare does nothing and returns the stored report with "cached": True.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from owngpt.data.builtin import BUILTINS
from owngpt.data.chats.wechat import SUFFIXES as WECHAT_SUFFIXES, contacts_path
from owngpt.data.shards import FORMAT, read_manifest
from owngpt.data.sources import BUILTIN_PREFIX, spec_target
from owngpt.data.walk import Entry, expand
from owngpt.errors import OwnGPTError

if TYPE_CHECKING:
    from owngpt.data.prepare import PrepareConfig


def _owngpt_version() -> str:
    try:
        return version("owngpt")
    except Exception:  # not installed (running from a checkout)
        return "0"


def _stat_entry(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def input_fingerprint_data(specs: list[str], exclude: Sequence[str | Path] = ()) -> list:
    """What identifies the inputs without reading them: the paths, sizes and mtimes of the files read_sources
    would read (the same walker: owngpt/data/walk.py) and of the WeChat contact list beside a CSV named directly
    (the reader takes speaker names from it), and the names of the paths it leaves out; builtin package versions."""
    out: list = []
    for spec in specs:
        if spec.startswith(BUILTIN_PREFIX):
            b = BUILTINS.get(spec[len(BUILTIN_PREFIX):])
            try:
                out.append([spec, version(b.pip) if b else None])
            except PackageNotFoundError:
                out.append([spec, None])
            continue
        target = spec_target(spec)
        entry: list = [spec]
        try:
            found = expand(target, exclude=exclude)[0]
        except OwnGPTError:
            found = []  # read_sources reports it
        out_dirs = {os.path.realpath(x) for x in exclude}
        for e in found:
            if os.path.realpath(e.path) in out_dirs:
                continue  # the run's own output folder: absent on the first run, present on the next
            if e.reason is None:
                try:
                    entry.append(_stat_entry(e.path))
                except OSError:
                    entry.append([str(e.path), None])
            else:
                entry.append([str(e.path), e.reason])
        entry += [_stat_entry(p) for p in _contact_lists(found)]
        out.append(entry)
    return out


def _contact_lists(found: list[Entry]) -> list[Path]:
    """The WeChat contact lists beside the CSV files named directly that the walk did not list itself."""
    listed = {e.path for e in found}
    beside = [contacts_path(e.path) for e in found if e.folder is None and e.path.suffix.lower() in WECHAT_SUFFIXES]
    return [p for p in dict.fromkeys(beside) if p not in listed and p.is_file()]


# Bumped whenever the same inputs and settings would give different output (a cleaning or dedup fix), so that a
# folder prepared by an earlier version is redone instead of reported up to date. 2: near-dedup batch-merge fix.
# 3: personal data written in full-width forms or split by invisible characters scrubbed (owngpt/data/pii.py), and
# unfinished prepare outputs among the inputs left out. 4: chat exports read anew (WhatsApp media and system lines in
# their real forms only, WeChat group speakers by name or pseudonym, older quote replies kept, file names scrubbed).
# 5: WhatsApp's invisible mark before "<This message was edited>" cut, a left-out session counted once, users.json
# left out as WeChat's contact list.
PIPELINE_VERSION = 5


def input_bytes(inputs: list) -> int:
    """Bytes in the input files of input_fingerprint_data (builtin corpora count 0): is cleaning worth a pool?"""
    return sum(e[1] for entry in inputs for e in entry[1:] if isinstance(e, list) and isinstance(e[1], int))


def fingerprint(inputs: list, cfg: PrepareConfig, tokenizer_hash: str | None) -> str:
    """Hash of input_fingerprint_data(specs), the settings and versions (see the module docstring)."""
    blob = json.dumps(
        {"inputs": inputs, "config": {k: v for k, v in asdict(cfg).items()
                                      if k != "workers" and not (k == "chats" and v is None)},
         "tokenizer": tokenizer_hash, "owngpt": _owngpt_version(), "format": FORMAT, "pipeline": PIPELINE_VERSION},
        sort_keys=True, default=str,
    )
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def cached_report(out: Path, fp: str) -> dict[str, Any] | None:
    """The stored report of DIR, marked "cached": True, when its valid manifest has fingerprint `fp`; else None."""
    try:
        manifest = read_manifest(out)
    except OwnGPTError:
        return None
    if manifest.get("fingerprint") != fp or not (out / "report.json").is_file():
        return None
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    report["cached"] = True
    return report
