"""The `owngpt` command: one verb per pipeline stage. Each verb parses options and calls the library."""

from __future__ import annotations

import sys

import typer

from owngpt.errors import OwnGPTError

app = typer.Typer(
    name="owngpt",
    help="Build your own personalized ChatGPT from scratch: prepare → tokenizer → pretrain → sft → chat.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DEBUG = False


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    global _DEBUG
    _DEBUG = debug


def _register() -> None:
    # Each module adds its verbs to `app`; imported here so `owngpt --help` lists them all.
    import importlib

    for name in ("data", "tokenizer", "train", "sft", "generate", "chat", "lora", "evaluate", "quickstart"):
        try:
            importlib.import_module(f"owngpt.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"owngpt.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; print OwnGPTError as one line (traceback only with --debug)."""
    _register()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = app(args=args, standalone_mode=False)
        if isinstance(code, int) and code:  # typer returns (not raises) 130 for Ctrl-C, 1 for click's Abort
            if code == 130:
                typer.secho("interrupted", err=True)
            sys.exit(code)
    except OwnGPTError as e:
        if debug:
            raise
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
