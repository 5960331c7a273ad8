"""The durable writer (owngpt/io.py): files replaced whole, and every file the project writes gets the mode the
umask gives, never a writer's private 0o600."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write, atomic_write_text, current_umask, file_mode, output_dir


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


def test_the_umask_is_read_without_changing_it():
    with umask(0o027):
        assert current_umask() == 0o027 and file_mode() == 0o640
        assert current_umask() == 0o027


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_mode_of_the_umask(tmp_path, mask, mode):
    from safetensors.torch import save_file

    with umask(mask):
        text = atomic_write_text(tmp_path / "a.json", "{}")
        weights = atomic_write(tmp_path / "w.safetensors", lambda t: save_file({"x": torch.zeros(2)}, str(t)))
        private = tmp_path / "private.txt"
        atomic_write(private, lambda t: (t.write_text("x"), os.chmod(t, 0o600)))
    assert _modes(tmp_path) == {"a.json": mode, "w.safetensors": mode, "private.txt": mode}
    assert text.read_text() == "{}" and weights.stat().st_size > 0


def test_a_saved_checkpoint_is_0644_throughout(tmp_path):
    """model.safetensors too (safetensors' save_file creates its file 0o600): a checkpoint others can read."""
    from owngpt.checkpoint.format import save_checkpoint
    from owngpt.checkpoint.meta import CheckpointMeta
    from owngpt.tokenizer import train_char

    tok = train_char(["hello world"])
    with umask(0o022):
        save_checkpoint(tmp_path / "run", 3, {"w": torch.ones(2, 2)}, CheckpointMeta(tokenizer_hash=tok.hash),
                        {"step": 3}, tokenizer=tok, best=True)
    modes = _modes(tmp_path / "run")
    assert "checkpoints/step_0000003/model.safetensors" in modes and "best/train_state.pt" in modes
    assert "best/tokenizer/tokenizer.json" in modes and "checkpoints/step_0000003/meta.json" in modes
    assert set(modes.values()) == {0o644}, {k: oct(v) for k, v in modes.items() if v != 0o644}


def test_output_dir_is_one_line_for_a_file_on_the_way(tmp_path):
    """Every verb's --out goes through output_dir: a file (or a broken link) there or above is an OwnGPTError, not
    a FileExistsError or NotADirectoryError traceback."""
    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(OwnGPTError, match=r"cannot write into .*taken: it is a file, not a folder"):
        output_dir(taken)
    with pytest.raises(OwnGPTError, match=r"cannot write into .*deeper: .*taken is a file, not a folder"):
        output_dir(taken / "sub" / "deeper", create=False)
    os.symlink(tmp_path / "gone", tmp_path / "dead")
    with pytest.raises(OwnGPTError, match="it is a broken symbolic link"):
        output_dir(tmp_path / "dead")
    assert output_dir(tmp_path / "new", create=False) == tmp_path / "new" and not (tmp_path / "new").exists()
    assert output_dir(tmp_path / "new" / "run").is_dir() and output_dir(tmp_path / "new" / "run").is_dir()
    assert taken.read_text() == "x"
