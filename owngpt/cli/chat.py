"""`owngpt chat`: talk to a model in the terminal (streaming), or script it with --message / stdin."""

from __future__ import annotations

import json
import sys
from typing import Iterable, List, Optional

import typer

from owngpt.chat.settings import CHAT_DEFAULTS
from owngpt.cli import app, options

FILTERED_NOTE = "(the reply was cut by the content filter)"


@app.command(help="Chat with a model: interactive with streaming replies and /commands (type /help), or "
             "non-interactive with --message (repeatable) or lines on stdin, one reply printed per turn.")
def chat(
    checkpoint: str = typer.Argument(..., help="Chat model: a run folder (its best checkpoint) or a checkpoint folder."),
    adapter: Optional[str] = options.adapter(),
    ensemble: List[str] = options.ensemble(),
    persona: Optional[str] = typer.Option(None, "--persona", help="Persona YAML/Markdown (or example-en / example-zh) whose system prompt to use."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt text (overrides --persona and the one recorded by `owngpt sft`; \"\" = none)."),
    temperature: float = options.temperature(CHAT_DEFAULTS.temperature),
    top_k: int = options.top_k(CHAT_DEFAULTS.top_k),
    top_p: float = options.top_p(CHAT_DEFAULTS.top_p),
    repetition_penalty: float = options.repetition_penalty(CHAT_DEFAULTS.repetition_penalty),
    max_new_tokens: int = options.max_new_tokens(CHAT_DEFAULTS.max_new_tokens, "per reply; at most half the context"),
    seed: Optional[int] = options.seed("Random seed: the same seed and inputs give the same replies."),
    mmi: int = typer.Option(0, "--mmi", help="Sample N candidate replies and keep the one the --backward model scores best (0 = off)."),
    backward: Optional[str] = typer.Option(None, "--backward", help="Backward model for --mmi (trained with `owngpt sft --reverse`; default: RUN/backward when `owngpt import-hf --backward` made one)."),
    message: List[str] = typer.Option([], "--message", "-m", help="Send this line (a message or a /command) without the interactive prompt; repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Non-interactive mode: print one JSON object per input line (input, reply, message, error)."),
    moderation: Optional[str] = options.moderation(),
    device: str = options.device(),
    dtype: str = options.dtype(),
    compile: bool = options.compile_decoding(),
) -> None:
    from owngpt.chat import ChatSession, chat_generation_config
    from owngpt.generate.moderation import load_content_filter

    gen = chat_generation_config(temperature=temperature, top_k=top_k, top_p=top_p,
                                 repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens, seed=seed)
    content_filter = load_content_filter(moderation) if moderation else None
    options.announce_compile(compile)
    session = ChatSession.from_checkpoint(checkpoint, adapter=adapter, device=device, system=system, persona=persona,
                                          gen=gen, mmi=mmi, backward=backward, content_filter=content_filter,
                                          dtype=dtype, ensemble=ensemble, compile=compile)
    if message:
        ok = _script(session, message, as_json)
    elif not sys.stdin.isatty():
        ok = _script(session, sys.stdin, as_json)
    else:
        run_interactive(session)
        ok = True
    if not ok:
        raise typer.Exit(1)


def _script(session, lines: Iterable[str], as_json: bool) -> bool:
    """Each line through handle_line; replies to stdout (one per turn), feedback to stderr. False on any error."""
    from owngpt.chat import handle_line
    from owngpt.errors import OwnGPTError

    ok = True
    for line in lines:
        line = line.rstrip("\r\n")
        result = handle_line(session, line)
        reply, text, error = None, result.message, result.error
        if result.stream is not None:
            try:
                for _ in result.stream:
                    pass
                reply = session.messages[-1]["content"]
            except OwnGPTError as e:
                text, error = str(e), True
        ok = ok and not error
        filtered = reply is not None and session.filtered
        if as_json:
            typer.echo(json.dumps({"input": line, "reply": reply, "message": text, "error": error,
                                   **({"filtered": True} if filtered else {})}, ensure_ascii=False))
        else:
            if text:
                typer.echo(("error: " if error else "") + text, err=True)
            if reply is not None:
                typer.echo(reply)
            if filtered:
                typer.echo(FILTERED_NOTE, err=True)
        if result.quit:
            break
    return ok


def offer_chat(chat_dir: str, *, seed: int | None = None, start: bool = True) -> None:
    """After a run that made a chat model: how to talk to it later, then (when `start` and at a terminal) the chat."""
    typer.echo(f"\nYour chat model is in {chat_dir}. Talk to it any time with:  owngpt chat {chat_dir}")
    if start and sys.stdin.isatty() and sys.stdout.isatty():
        from owngpt.chat import ChatSession

        run_interactive(ChatSession.from_checkpoint(chat_dir, seed=seed))


def run_interactive(session) -> None:
    from rich.text import Text

    from owngpt.chat import handle_line, settings_summary
    from owngpt.console import console as make_console, styled
    from owngpt.errors import OwnGPTError

    try:
        import readline  # noqa: F401 - line editing and history for the prompt
    except ImportError:
        pass
    console = make_console()
    console.print(styled(("owngpt chat", "bold"), " — ", settings_summary(session)))
    console.print(Text("type /help for commands; /quit or Ctrl-D leaves; Ctrl-C stops a reply", style="dim"))
    while True:
        try:
            line = console.input(styled(("you › ", "bold green")))
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        result = handle_line(session, line)
        if result.message:
            console.print(Text(result.message, style="red" if result.error else "dim"))
        if result.stream is not None:
            console.print(Text("bot › ", style="bold cyan"), end="")
            try:
                for piece in result.stream:
                    sys.stdout.write(piece)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            except KeyboardInterrupt:
                console.print(Text(" [stopped]", style="dim"))
            except OwnGPTError as e:
                console.print(Text(f"\nerror: {e}", style="red"))
            if session.filtered:
                console.print(Text(FILTERED_NOTE, style="dim"))
            if session.last_candidates and session.mmi > 1:
                scores = ", ".join(f"{s:.1f}" for _, s in session.last_candidates)
                console.print(Text(f"(MMI: best of {len(session.last_candidates)} candidates, scores {scores})", style="dim"))
        if result.quit:
            return
