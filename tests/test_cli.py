"""The `owngpt` entry point: usage errors print click's usage message (no traceback) whichever click typer uses."""

from __future__ import annotations

import click
import pytest
import typer

import owngpt
from owngpt.cli import main


def run_main(args: list[str], capsys) -> tuple[int, str]:
    """Exit code and stdout + stderr of `owngpt ARGS`, run through the real entry point."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


@pytest.mark.parametrize("args, names", [
    (["nosuch"], ["No such command", "nosuch"]),
    (["pretrain", "--data", "x", "--bogus"], ["No such option", "--bogus"]),
    (["generate"], ["Missing argument", "checkpoint"]),
    (["generate", "run", "--temperature", "warm"], ["Invalid value", "--temperature"]),
])
def test_usage_errors_print_the_usage_message_and_exit_2(capsys, args, names):
    code, output = run_main(args, capsys)
    assert code == 2, output
    assert "Traceback" not in output
    assert "Usage:" in output and "Error:" in output
    for name in names:
        assert name in output


def test_usage_error_of_the_click_package_is_handled_too(capsys, monkeypatch):
    """Older typer raises the click package's exceptions rather than those of its vendored copy."""
    def fail(*args, **kwargs):
        raise click.UsageError("--flavour is not an option here")

    monkeypatch.setattr(owngpt, "load", fail)
    code, output = run_main(["generate", "run", "hi"], capsys)
    assert code == 2 and "--flavour is not an option here" in output and "Traceback" not in output


@pytest.mark.parametrize("abort", [typer.Abort, click.exceptions.Abort])
def test_abort_exits_1(capsys, monkeypatch, abort):
    def fail(*args, **kwargs):
        raise abort()

    monkeypatch.setattr(owngpt, "load", fail)
    code, output = run_main(["generate", "run", "hi"], capsys)
    assert code == 1 and "Traceback" not in output
