"""The chat command language (`/reset`, `/system`, `/temperature`, ...): one line of input -> what to show.

The interactive terminal loop and the non-interactive `--message`/stdin mode both call `handle_line`, so a script
exercises exactly what a person typing would.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from owngpt.chat.session import ChatSession
from owngpt.errors import OwnGPTError


@dataclass
class CommandResult:
    """What to show after one input line: feedback text, and/or a reply to stream; quit ends the chat."""

    message: str = ""
    stream: Iterator[str] | None = None
    quit: bool = False
    error: bool = False


def _number(arg: str, kind: type, name: str, lo: float, hi: float | None = None, lo_open: bool = False) -> Any:
    try:
        value = kind(arg)
    except ValueError:
        raise OwnGPTError(f"/{name} needs a{'n integer' if kind is int else ' number'}, e.g. /{name} "
                          f"{'50' if kind is int else '0.8'}") from None
    if value < lo or (lo_open and value == lo) or (hi is not None and value > hi):
        upper = f" and at most {hi}" if hi is not None else ""
        raise OwnGPTError(f"/{name} must be {'above' if lo_open else 'at least'} {lo}{upper}, not {arg}")
    return value


def _set(session: ChatSession, key: str, value: Any) -> str:
    session.gen = replace(session.gen, **{key: value})
    return f"{key} = {value}"


def _cmd_help(session: ChatSession, arg: str) -> CommandResult:
    width = max(len(f"/{n} {a}") for n, (a, _, _) in COMMANDS.items())
    lines = [f"  {f'/{n} {a}'.ljust(width)}  {d}" for n, (a, d, _) in COMMANDS.items()]
    lines.append("  A line starting with // sends the rest as a message beginning with /.")
    return CommandResult("commands:\n" + "\n".join(lines))


def _cmd_reset(session: ChatSession, arg: str) -> CommandResult:
    session.reset()
    return CommandResult("conversation cleared")


def _cmd_system(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"system prompt: {session.system}" if session.system else "no system prompt "
                             "(set one with /system TEXT)")
    session.system = None if arg == "-" else arg
    return CommandResult("system prompt cleared" if arg == "-" else "system prompt set")


def _cmd_temperature(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"temperature = {session.gen.temperature}")
    return CommandResult(_set(session, "temperature", _number(arg, float, "temperature", 0.0)))


def _cmd_topk(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"top_k = {session.gen.top_k}")
    return CommandResult(_set(session, "top_k", _number(arg, int, "topk", 0)))


def _cmd_topp(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"top_p = {session.gen.top_p}")
    return CommandResult(_set(session, "top_p", _number(arg, float, "topp", 0.0, 1.0, lo_open=True)))


def _cmd_regenerate(session: ChatSession, arg: str) -> CommandResult:
    return CommandResult(stream=session.stream_regenerate())


def _cmd_save(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        raise OwnGPTError("/save needs a file name, e.g. /save chat.json")
    return CommandResult(f"saved {len(session.messages)} messages to {session.save(arg)}")


def _cmd_load(session: ChatSession, arg: str) -> CommandResult:
    if not arg:
        raise OwnGPTError("/load needs a file name, e.g. /load chat.json")
    session.load(arg)
    return CommandResult(f"loaded {len(session.messages)} messages from {arg}")


def _cmd_settings(session: ChatSession, arg: str) -> CommandResult:
    return CommandResult(", ".join(f"{k} = {v}" for k, v in session.settings().items()))


def _cmd_quit(session: ChatSession, arg: str) -> CommandResult:
    return CommandResult(quit=True)


# name -> (argument, description, handler); also the order /help lists them in
COMMANDS: dict[str, tuple[str, str, Callable[[ChatSession, str], CommandResult]]] = {
    "help": ("", "show this list", _cmd_help),
    "reset": ("", "forget the conversation (system prompt and settings stay)", _cmd_reset),
    "system": ("[TEXT|-]", "show, set, or (with -) clear the system prompt", _cmd_system),
    "temperature": ("[X]", "sampling temperature; 0 = always the most likely token", _cmd_temperature),
    "topk": ("[N]", "sample from the N most likely tokens; 0 = off", _cmd_topk),
    "topp": ("[X]", "sample from the smallest set of tokens with probability X; 1 = off", _cmd_topp),
    "regenerate": ("", "replace the last reply by a new one", _cmd_regenerate),
    "save": ("FILE", "save the conversation and settings as JSON", _cmd_save),
    "load": ("FILE", "continue a conversation saved with /save", _cmd_load),
    "settings": ("", "show the sampling settings", _cmd_settings),
    "quit": ("", "leave the chat (also /exit, Ctrl-D)", _cmd_quit),
}
_ALIASES = {"exit": "quit", "q": "quit", "clear": "reset", "regen": "regenerate", "top_k": "topk", "top_p": "topp",
            "temp": "temperature", "?": "help"}


def handle_command(session: ChatSession, line: str) -> CommandResult:
    """Run one `/command [argument]` line. User mistakes come back as an error message, never an exception."""
    name, _, arg = line.strip()[1:].partition(" ")
    name, arg = name.lower(), arg.strip()
    name = _ALIASES.get(name, name)
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS) + list(_ALIASES), n=1, cutoff=0.6)
        hint = f"did you mean /{_ALIASES.get(close[0], close[0])}? " if close else ""
        return CommandResult(f"unknown command /{name}; {hint}type /help for the list (start a message with // to "
                             "send a line that begins with /)", error=True)
    try:
        return COMMANDS[name][2](session, arg)
    except OwnGPTError as e:
        return CommandResult(str(e), error=True)


def handle_line(session: ChatSession, line: str) -> CommandResult:
    """One line of input: a /command, or a message whose reply comes back as `stream` (blank lines do nothing)."""
    line = line.rstrip("\r\n")
    if line.startswith("//"):
        return CommandResult(stream=session.stream_reply(line[1:]))
    if line.startswith("/"):
        return handle_command(session, line)
    if not line.strip():
        return CommandResult()
    return CommandResult(stream=session.stream_reply(line))
