"""`owngpt tokenizer`: train (its --out, what it reports of its inputs) and encode (how a text splits, each piece
shown once-escaped)."""

from __future__ import annotations

from typer.testing import CliRunner

import os

from owngpt.cli import _register, app, main
from owngpt.cli.tokenizer import show_piece
from owngpt.tokenizer import train_char


def test_encode_shows_byte_pieces_escaped_once(tmp_path):
    """A character the tokenizer lacks falls back to its UTF-8 bytes: each shows as \\xe4, not \\\\xe4."""
    _register()
    train_char(["hello world"]).save(tmp_path / "tok")
    r = CliRunner().invoke(app, ["tokenizer", "encode", str(tmp_path / "tok"), "he 你"])
    assert r.exit_code == 0, r.output
    pieces = r.output.splitlines()[-1]
    assert pieces == r"pieces: 'h' 'e' ' ' '\xe4' '\xbd' '\xa0'"
    assert "\\\\" not in r.output


def test_show_piece_is_a_python_style_literal():
    assert show_piece("你".encode()) == "'你'" and show_piece(b"\xe4\xbd") == r"'\xe4\xbd'"
    assert show_piece(b"a\\b") == r"'a\\b'"  # a real backslash stays doubled, as repr() shows it
    assert show_piece(b"\n\t") == r"'\n\t'" and show_piece(b"it's") == r"'it\'s'"


def _run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_train_out_naming_a_file_is_one_line_before_training(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("".join(f"line {i} of some ordinary text to train on\n" for i in range(20)))
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert _run(["tokenizer", "train", str(tmp_path / "in"), "--out", str(taken), "--vocab-size", "300"]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: cannot write into {taken}: it is a file, not a folder; name a new or existing " \
        "folder (--out) instead\n"
    assert "cleaned as prepare does" not in captured.out  # refused before reading and training


def test_train_reports_the_inputs_it_left_out(tmp_path, capsys):
    """A named pipe, a broken link and a file of another type are reported as prepare reports them, not dropped
    without a word."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("".join(f"line {i} of some ordinary text to train on\n" for i in range(20)))
    os.mkfifo(src / "pipe.txt")
    os.symlink(tmp_path / "gone.txt", src / "dead.txt")
    (src / "photo.png").write_bytes(b"\x89PNG")
    assert _run(["tokenizer", "train", str(src), "--out", str(tmp_path / "tok"), "--vocab-size", "300"]) == 0
    out = capsys.readouterr().out
    assert "skipped 3 records: " in out
    for reason in ("not a regular file (named pipe)", "broken symbolic link", "not a readable file type"):
        assert reason in out, out
    assert f"{src / 'pipe.txt'}: not a regular file (named pipe)" in out
