"""Printers several verbs share: the chat dry run (`prepare --dry-run`, `clone --dry-run`) and the style comparison
(`clone`, `evaluate --style`). Every text is printed as written, never as markup (owngpt/console.py); tables fit an
80-column terminal, and the full figures are in the JSON reports."""

from __future__ import annotations

from typing import Any

STYLE_ROWS = (("chars_median", "median chars", "{:.0f}"), ("chars_p90", "p90 chars", "{:.0f}"),
              ("length_js", "length JS", "{:.3f}"), ("emoji", "emoji", "{:.1%}"), ("question", "?", "{:.1%}"),
              ("exclamation", "!", "{:.1%}"), ("lower_start", "lower-case start", "{:.1%}"),
              ("distinct_1", "distinct-1", "{:.3f}"), ("distinct_2", "distinct-2", "{:.3f}"),
              ("char3_cosine", "char 3-gram sim.", "{:.3f}"), ("distance", "style distance", "{:.3f}"))


def print_dry_run(report: dict, console: Any = None) -> None:
    """The dry run (owngpt/data/chats/dryrun.py) as the terminal shows it."""
    from rich.table import Table

    from owngpt.console import console as make_console

    console = console or make_console()
    if report["files"]:
        files = Table(title="chat exports")
        for col in ("file", "format", "chats", "groups", "messages", "mine", "speakers"):
            files.add_column(col, overflow="fold", justify="right" if col in ("chats", "groups", "messages", "mine")
                             else "left")
        for f in report["files"]:
            files.add_row(f["path"], f["format"], str(f["chats"]), str(f["group_chats"]), f"{f['messages']:,}",
                          f"{f['mine']:,}", f["speakers"])
        console.print(files)
    lines = [f"{f['path']}: {f['note']}" for f in report["files"] if f["note"]]
    if report["files"]:
        lines += [
            f"{report['mine']:,} of {report['messages']:,} text messages are yours ({report['share_mine']:.0%}); "
            f"you write in: {', '.join(f'{k} {v:,}' for k, v in report['languages'].items()) or '-'}",
            f"trained on: {report['chat_conversations']:,} sessions, {report['turns']['assistant']:,} turns of yours "
            f"({report['trained_chars']:,} characters); context only: {report['turns']['user']:,} turns of others "
            f"({report['context_chars']:,} characters)",
        ]
    lines.append("left out, messages and files: " + (", ".join(f"{k} ({v:,})" for k, v in report["dropped"].items())
                                                     or "none"))
    if report["files"]:
        lines += [
            "left out, sessions: " + (", ".join(f"{k} ({v:,})" for k, v in report["sessions_left_out"].items())
                                      or "none"),
            "personal data replaced: " + (", ".join(f"{k[4:]} {v:,}" for k, v in report["scrubbed"].items() if v)
                                          or "none found"),
        ]
    other = report["conversations"] - report["chat_conversations"]
    if report["documents"] or other or not report["files"]:
        lines.append(f"documents: {report['documents']:,} ({report['document_chars']:,} characters, before cleaning); "
                     f"conversations of other sources: {other:,}")
    if report["block_list"]:
        lines.append(f"block list: {report['block_list']}")
    for line in lines:
        console.print(line, soft_wrap=True)  # the terminal wraps it: a path or a speaker list stays whole
    for i, conversation in enumerate(report["examples"], 1):
        console.print(f"example {i} (scrubbed):")
        for m in conversation:
            who = "you" if m["role"] == "assistant" else "them"
            console.print(f"  {who:>4} › " + m["content"].replace("\n", " / "))


def print_style(result: dict, console: Any = None) -> None:
    """The style comparison (owngpt/evaluate/style.py) as a table with a row per measure and a column per set of
    replies, then a few examples."""
    from rich.table import Table

    from owngpt.console import console as make_console

    table = Table(title=f"does it sound like you? {result['texts']} replies each, at held-out points")
    table.add_column("measure", no_wrap=True)
    for name in result["rows"]:
        table.add_column(name, justify="right", overflow="fold")
    rows = result["rows"].values()
    for key, title, fmt in STYLE_ROWS:
        table.add_row(title, *(fmt.format(row[key]) for row in rows))
    table.add_row("perplexity", *(f"{result['perplexity'][name]['perplexity']:.1f}"
                                  if name in result["perplexity"] else "-" for name in result["rows"]))
    console = console or make_console()
    console.print(table)
    console.print("style distance: 0 = indistinguishable from your real replies by length, emoji, punctuation and "
                  "character 3-grams; perplexity: on your held-out turns")
    for ex in result.get("examples", [])[:3]:
        console.print(f"  them › {ex['context']}".replace("\n", " / "))
        for name, text in ex.items():
            if name != "context":
                console.print(f"    {name} › {text}".replace("\n", " / "))


def print_eval(report: dict, console: Any = None) -> None:
    """`owngpt eval`'s table: a row per measure, a column per model; then notes, BLEU's signature and examples."""
    from rich.table import Table

    from owngpt.console import console as make_console
    from owngpt.evaluate.suite import EVAL_ROWS, eval_cell

    console = console or make_console()
    models = report["models"]
    table = Table(title=f"held-out {report['split']} split of {report['data']}")
    table.add_column("measure", no_wrap=True)
    for name, r in models.items():
        table.add_column(f"{name}\n({r['arch']}, {r['size']})", justify="right", overflow="fold")
    for title, section, key, fmt in EVAL_ROWS:
        if any(section in r for r in models.values()):
            table.add_row(title, *(eval_cell(r, section, key, fmt) for r in models.values()))
    console.print(table)
    notes = {note for r in models.values() for note in r["notes"]}
    for note in sorted(notes):
        console.print(f"note: {note}", soft_wrap=True)
    first = next(iter(models.values()))
    if first.get("chat", {}).get("bleu_signature"):
        console.print(f"BLEU: sacrebleu {first['chat']['bleu_signature']}, {first['chat']['replies']} sampled replies "
                      "against the real reply at each held-out conversation's first answer", soft_wrap=True)
    for name, r in models.items():
        for ex in r.get("chat", {}).get("examples", [])[:2]:
            console.print(f"  [{name}] user › {ex['prompt']}".replace("\n", " / "), soft_wrap=True)
            console.print(f"  [{name}] real › {ex['reference']}".replace("\n", " / "), soft_wrap=True)
            console.print(f"  [{name}] model › {ex['reply']}".replace("\n", " / "), soft_wrap=True)
