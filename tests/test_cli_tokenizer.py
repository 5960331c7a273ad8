"""`owngpt tokenizer encode`: how a text splits, each piece shown once-escaped."""

from __future__ import annotations

from typer.testing import CliRunner

from owngpt.cli import _register, app
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
