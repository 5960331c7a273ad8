"""Tests for owngpt/data/walk.py, the one input walker: special files, broken links, linked folders (followed once),
the run's own output folder and earlier prepare outputs left out and reported; and prepare on top of it."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from owngpt.data.prepare import PrepareConfig, prepare
from owngpt.data.report import check_accounting
from owngpt.data.sources import read_sources
from owngpt.data.walk import expand
from owngpt.errors import OwnGPTError
from helpers import write

TEXT = "A perfectly ordinary note about the weather and the garden, long enough to keep.\n"


def _skips(records) -> dict[str, str]:
    return {os.path.basename(r.loc): r.reason for r in records if type(r).__name__ == "Skip"}


@pytest.fixture
def alarm():
    """Fail instead of hanging forever (a named pipe opened for reading waits for a writer)."""
    def on_alarm(*_):
        raise TimeoutError("the walker opened a special file and hung")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_named_pipe_is_reported_not_opened(tmp_path, alarm):
    write(tmp_path / "in" / "a.txt", TEXT)
    os.mkfifo(tmp_path / "in" / "pipe.txt")
    records = list(read_sources([str(tmp_path / "in")]))
    assert [r.text for r in records if hasattr(r, "text")] == [TEXT]
    assert _skips(records) == {"pipe.txt": "not a regular file (named pipe)"}


def test_named_pipe_given_directly_is_a_skip(tmp_path, alarm):
    os.mkfifo(tmp_path / "pipe.txt")
    assert _skips(read_sources([str(tmp_path / "pipe.txt")])) == {"pipe.txt": "not a regular file (named pipe)"}


def test_broken_symlink_in_folder_and_glob_is_reported(tmp_path):
    write(tmp_path / "in" / "a.txt", TEXT)
    os.symlink(tmp_path / "gone.txt", tmp_path / "in" / "dead.txt")
    for spec in (str(tmp_path / "in"), str(tmp_path / "in" / "*.txt")):
        records = list(read_sources([spec]))
        assert _skips(records) == {"dead.txt": "broken symbolic link"}, spec
        assert sum(hasattr(r, "text") for r in records) == 1


def test_symlinked_folder_is_followed_once_and_a_loop_reported(tmp_path):
    write(tmp_path / "elsewhere" / "b.txt", TEXT + "b")
    write(tmp_path / "in" / "a.txt", TEXT)
    os.symlink(tmp_path / "elsewhere", tmp_path / "in" / "linked")
    os.symlink(tmp_path / "in", tmp_path / "in" / "loop")  # a link back up: would recurse forever
    entries, _ = expand(str(tmp_path / "in"))
    read = sorted(e.path.name for e in entries if e.reason is None)
    assert read == ["a.txt", "b.txt"]
    left = {e.path.name: e.reason for e in entries if e.reason is not None}
    assert left == {"loop": "symbolic link to a folder already read (left out)"}


def test_output_folder_inside_input_is_never_read(tmp_path, monkeypatch):
    """`cd notes; owngpt prepare . --out data` twice, with --force, and with --no-dedup: same documents each time."""
    notes = tmp_path / "notes"
    for i in range(5):
        write(notes / f"n{i}.txt", f"{TEXT} number {i}")
    monkeypatch.chdir(notes)
    cfg = PrepareConfig(vocab_size=300, workers=1)
    first = prepare(["."], "data", cfg, progress=False)
    again = prepare(["."], "data", cfg, progress=False)  # crashed with FileNotFoundError: data/manifest.json
    assert again.get("cached") is True
    forced = prepare(["."], "data", cfg, progress=False, force=True)
    undeduped = prepare(["."], "data", PrepareConfig(vocab_size=300, workers=1, dedup=False), progress=False)
    for rep in (first, forced, undeduped):
        check_accounting(rep)
        assert rep["total"]["documents"]["in"] == 5
    assert any("output folder" in line for line in forced["skips"]["listed"])


def test_an_earlier_prepare_output_in_the_input_is_left_out(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        write(src / f"n{i}.txt", f"{TEXT} {i}")
    cfg = PrepareConfig(vocab_size=300, workers=1)
    prepare([str(src)], src / "old_data", cfg, progress=False)
    rep = prepare([str(src)], tmp_path / "new", cfg, progress=False)
    assert rep["total"]["documents"]["in"] == 3
    assert any("written by `owngpt prepare`" in line for line in rep["skips"]["listed"])


@pytest.mark.parametrize("leftover", ["report.json", "docs/train.jsonl.tmp", "tokens"])
def test_an_unfinished_prepare_output_in_the_input_is_left_out(tmp_path, leftover):
    """A run that failed or was interrupted leaves no manifest.json: its docs/*.jsonl were read back in as raw input
    (with --no-dedup, every document twice)."""
    src = tmp_path / "src"
    for i in range(3):
        write(src / f"n{i}.txt", f"{TEXT} {i}")
    cfg = PrepareConfig(vocab_size=300, workers=1, dedup=False)
    prepare([str(src)], src / "old", cfg, progress=False)
    (src / "old" / "manifest.json").unlink()
    if leftover != "report.json":  # interrupted before report.json was written
        (src / "old" / "report.json").unlink()
        if leftover == "docs/train.jsonl.tmp":
            shutil.rmtree(src / "old" / "tokens")
            (src / "old" / leftover).touch()
    rep = prepare([str(src)], tmp_path / "new", cfg, progress=False)
    assert rep["total"]["documents"]["in"] == 3
    assert any("unfinished `owngpt prepare` folder" in line for line in rep["skips"]["listed"])
    assert [e.path.name for e in expand(str(src))[0] if e.reason is not None] == ["old"]


def test_a_folder_of_jsonl_files_named_docs_is_read(tmp_path):
    """Only what prepare leaves marks a folder as its output: a user's docs/ folder of JSONL is read."""
    write(tmp_path / "src" / "docs" / "train.jsonl", json.dumps({"text": TEXT}) + "\n")
    entries, _ = expand(str(tmp_path / "src"))
    assert [(e.path.name, e.reason) for e in entries] == [("train.jsonl", None)]


def test_out_naming_a_file_is_one_clear_error(tmp_path):
    write(tmp_path / "in" / "a.txt", TEXT)
    write(tmp_path / "taken", "x")
    with pytest.raises(OwnGPTError, match="is a file, not a folder"):
        prepare([str(tmp_path / "in")], tmp_path / "taken", PrepareConfig(vocab_size=300), progress=False)


def test_fingerprint_and_reading_agree_on_what_is_read(tmp_path):
    """The cache key changes when a file the walker reads changes, not when a left-out one does."""
    from owngpt.data.fingerprint import input_fingerprint_data

    write(tmp_path / "in" / "a.txt", TEXT)
    os.symlink(tmp_path / "nowhere", tmp_path / "in" / "dead.txt")
    data = input_fingerprint_data([str(tmp_path / "in")])
    assert json.dumps(data).count("broken symbolic link") == 1
