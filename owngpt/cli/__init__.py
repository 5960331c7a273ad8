"""The `owngpt` command: one verb per pipeline stage. Each verb parses options and calls the library."""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

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
    """Import every verb module (each adds its verbs to `app`), so `owngpt --help` lists them all. Explicit imports:
    a renamed or broken module fails here loudly instead of its verb silently vanishing."""
    # in pipeline order, the order `owngpt --help` lists them in
    import owngpt.cli.data  # noqa: F401
    import owngpt.cli.persona  # noqa: F401
    import owngpt.cli.tokenizer  # noqa: F401
    import owngpt.cli.train  # noqa: F401
    import owngpt.cli.sweep  # noqa: F401
    import owngpt.cli.hf_import  # noqa: F401
    import owngpt.cli.sft  # noqa: F401
    import owngpt.cli.generate  # noqa: F401
    import owngpt.cli.chat  # noqa: F401
    import owngpt.cli.lora  # noqa: F401
    import owngpt.cli.baseline  # noqa: F401
    import owngpt.cli.evaluate  # noqa: F401
    import owngpt.cli.compare  # noqa: F401
    import owngpt.cli.rate  # noqa: F401
    import owngpt.cli.serve  # noqa: F401
    import owngpt.cli.compress  # noqa: F401
    import owngpt.cli.export  # noqa: F401
    import owngpt.cli.gguf  # noqa: F401
    import owngpt.cli.quickstart  # noqa: F401
    import owngpt.cli.clone  # noqa: F401


def _quiet_other_ranks() -> None:
    """Under torchrun only rank 0 speaks: the others' standard output goes nowhere (their errors still show, with
    torchrun's rank prefix), so a run over N processes reads like a run in one."""
    from owngpt.runtime import launched_rank

    if launched_rank() > 0:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the life of the process


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; print OwnGPTError and running out of GPU memory as one line (traceback only with
    --debug), and click's usage errors as click prints them."""
    _register()
    from owngpt.allocator import keep_freed_memory

    keep_freed_memory()  # before any tensor exists: no step pays the allocator's unmap-and-fault again
    _quiet_other_ranks()
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
    except Exception as e:  # in non-standalone mode click's usage errors and Abort arrive here
        if isinstance(e, _usage_error_classes()):
            _show_usage_error(e)
        if isinstance(e, (typer.Abort, *_click_classes("Abort"))):
            sys.exit(1)
        if _out_of_memory(e) and not debug:
            typer.secho(f"error: {_OOM_ADVICE}", fg=typer.colors.RED, err=True)
            sys.exit(1)
        raise


# Where click's exception classes live: the click package (older typer uses it) and the copy newer typer
# vendors. The two are unrelated classes, so an error of one is not an instance of the other's.
_CLICK_MODULES = ("click.exceptions", "typer._click.exceptions")


def _click_classes(name: str) -> tuple[type, ...]:
    """Class `name` (ClickException, Abort) from each click module that is installed and defines it."""
    found = []
    for module in _CLICK_MODULES:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def _usage_error_classes() -> tuple[type, ...]:
    """ClickException of each click, and typer's public TyperException: the base of its vendored copy's errors,
    should that copy move."""
    return (*_click_classes("ClickException"), *([typer.TyperException] if hasattr(typer, "TyperException") else []))


def _show_usage_error(e: Exception) -> NoReturn:
    """Print the error as click does (the usage line, a hint, the message) and exit with its code (2: usage)."""
    show = getattr(e, "show", None)
    if callable(show):
        show()
    else:
        typer.echo(f"Error: {e}", err=True)
    sys.exit(getattr(e, "exit_code", 2))


_OOM_ADVICE = ("the GPU ran out of memory: use a smaller batch (fewer prompts or --num-samples, a smaller batch "
               "size), a smaller --max-new-tokens or model, or --device cpu; --debug shows the details")


def _out_of_memory(e: BaseException) -> bool:
    """Whether `e` is torch running out of accelerator memory: CUDA's OutOfMemoryError, or MPS's RuntimeError."""
    torch = sys.modules.get("torch")  # the error came from torch if at all: no need to import it here
    if torch is None:
        return False
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError  # torch.OutOfMemoryError: 2.5+
    return isinstance(e, oom) or (isinstance(e, RuntimeError) and "MPS backend out of memory" in str(e))
