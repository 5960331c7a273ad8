"""THE terminal printer: a Rich console that shows text exactly as it is, never as markup.

User text (file names, documents, report examples) and model text (replies) can hold anything: `[/]` or
`[bold]` is Rich markup, `:smile:` an emoji code, and printed through a default console they raise
`MarkupError` or silently vanish. Every verb prints through `console()`, whose markup, emoji codes and
highlighting are off; styling comes only from `styled(...)` parts, so a style never comes from the text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """A Rich console that prints strings literally (markup, emoji codes and highlighting off)."""
    from rich.console import Console

    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, **kwargs)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Text from plain strings and (string, style) pairs; the strings are never read as markup."""
    from rich.text import Text

    return Text.assemble(*parts)
