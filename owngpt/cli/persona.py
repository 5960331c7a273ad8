"""`owngpt persona suggest`: draft a persona file from your own chat messages."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from owngpt.cli import app, options

persona_app = typer.Typer(help="Persona files: draft one from your own chat messages.", no_args_is_help=True)
app.add_typer(persona_app, name="persona")


@persona_app.command("suggest", help="Draft a persona YAML from your messages in chat exports (or in the train split "
                     "of a folder `owngpt prepare --me` wrote): your name, languages, a style and personality guessed "
                     "from how you write, and instructions describing it (typical length, emoji, phrases you use), "
                     "from your messages cleaned and scrubbed as prepare does, without those --block drops. From raw exports "
                     "only the sessions prepare's default split puts in train are read (give the --session-gap and "
                     "--groups you prepare or clone with), so the val and test sessions stay held out. Edit it, "
                     "then use it with `owngpt sft --persona` or `owngpt clone --persona`.")
def suggest(
    sources: List[str] = typer.Argument(..., help="Chat exports, folders of them, or a prepared folder."),
    me: List[str] = options.me(),
    name: Optional[str] = typer.Option(None, "--name", help="The persona's name (default: the first --me)."),
    session_gap: str = options.session_gap(),
    groups: str = options.groups(),
    date_order: str = options.date_order(),
    block: Optional[str] = options.block(),
    out: Optional[str] = typer.Option(None, "--out", help="Write the persona to this file (default: print it)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    from owngpt.errors import OwnGPTError
    from owngpt.io import atomic_write_text
    from owngpt.persona.suggest import suggest_persona

    chats = options.chat_options(me, session_gap, groups, date_order, block)
    text, facts = suggest_persona(list(sources), chats, name or "")
    if not out:
        typer.echo(text, nl=False)
        return
    if Path(out).exists() and not force:
        raise OwnGPTError(f"{out} exists; give --force to overwrite it, or another --out")
    atomic_write_text(out, text)
    fill = "" if facts["name"] else ", and write your name in it"
    typer.echo(f"persona drafted from {facts['messages']:,} of your messages → {out} (edit it{fill}, then: "
               f"owngpt sft --persona {out} ...)")
