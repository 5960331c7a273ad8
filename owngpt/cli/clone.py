"""`owngpt clone`: your chat exports → a model that answers in your voice (read → pretrain → sft → evaluate → chat);
also the printers of the chat dry run and of the style comparison, which `prepare` and `evaluate` share."""

from __future__ import annotations

from typing import List, Optional

import typer

from owngpt.cli import app, options


@app.command(help="Talk like me: read your chat exports (WeChat CSV from PyWxDump, QQ .txt, Telegram result.json, "
             "WhatsApp .txt; recognised from the file, or forced with wechat:FILE, qq:FILE, telegram:FILE, "
             "whatsapp:FILE), pretrain a small GPT (or start from --base), fine-tune it on your own turns only, "
             "measure on held-out sessions whether it sounds like you, then chat. About 20 minutes on 2 CPU cores "
             "with the defaults; re-running continues where it stopped.")
def clone(
    exports: List[str] = typer.Argument(..., help="Chat export files or folders of them (prefix wechat:, qq:, "
                                        "telegram: or whatsapp: to force a format)."),
    me: List[str] = options.me(),
    out: str = typer.Option("runs/clone", "--out", help="Folder for the data, the models and clone_report.json."),
    base: Optional[str] = typer.Option(None, "--base", help="Fine-tune this pretrained run or checkpoint instead of "
                                       "pretraining one (its tokenizer is used)."),
    session_gap: str = options.session_gap(),
    groups: str = options.groups(),
    date_order: str = options.date_order(),
    block: Optional[str] = options.block(),
    dry_run: bool = options.dry_run(),
    persona: Optional[str] = typer.Option(None, "--persona", help="A persona file (draft one with `owngpt persona "
                                          "suggest`): its system prompt and identity chats go into fine-tuning."),
    lang: Optional[str] = typer.Option(None, "--lang", help="en or zh: the built-in corpora to pretrain on (default: "
                                       "the language most of your messages are in)."),
    pretrain_data: List[str] = typer.Option([], "--pretrain-data", help="Pretrain on these sources (files, folders, "
                                            "builtin:NAME) instead of the built-in corpora; repeatable."),
    pretrain_time: str = typer.Option("11m", "--pretrain-time", help="Wall-time budget of pretraining."),
    sft_time: str = typer.Option("5m", "--sft-time", help="Wall-time budget of fine-tuning on your turns."),
    vocab_size: int = typer.Option(4096, "--vocab-size", help="BPE vocabulary size (without --base)."),
    eval_samples: int = typer.Option(100, "--eval-samples", help="Held-out points at which replies are sampled."),
    seed: int = typer.Option(0, "--seed", help="Seed for training and sampling."),
    set_: List[str] = typer.Option([], "--set", help="Pretraining override, e.g. --set model.n_layer=4; repeatable."),
    sft_set: List[str] = typer.Option([], "--sft-set", help="Fine-tuning override, e.g. --sft-set train.lr=5e-4."),
    no_chat: bool = typer.Option(False, "--no-chat", help="Do not start the interactive chat at the end."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars; only the stage lines and the report."),
) -> None:
    from owngpt.clone import CloneConfig, run_clone

    chats = options.chat_options(me, session_gap, groups, date_order, block)
    if dry_run:
        from owngpt.data.chats.dryrun import dry_run as report_of

        print_dry_run(report_of(list(exports), chats))
        return
    cfg = CloneConfig(exports=list(exports), chats=chats, out=out, base=base or "", lang=lang or "",
                      pretrain_data=list(pretrain_data), pretrain_time=pretrain_time, sft_time=sft_time,
                      vocab_size=vocab_size, persona=persona or "", eval_samples=eval_samples, seed=seed,
                      pretrain_overrides=list(set_), sft_overrides=list(sft_set))
    report = run_clone(cfg, echo=lambda line: typer.secho(line, bold=True), quiet=quiet)
    print_clone(report)
    from owngpt.cli.chat import offer_chat

    offer_chat(f"{out}/chat", seed=seed, start=not no_chat)


def print_dry_run(report: dict) -> None:
    """The dry run as the terminal shows it (every text printed as written, never as markup)."""
    from rich.table import Table

    from owngpt.console import console as make_console

    console = make_console()
    files = Table(title="chat exports")
    for col in ("file", "format", "chats", "groups", "messages", "mine", "speakers"):
        files.add_column(col, overflow="fold", justify="right" if col in ("chats", "groups", "messages", "mine")
                         else "left")
    for f in report["files"]:
        files.add_row(f["path"], f["format"], str(f["chats"]), str(f["group_chats"]), f"{f['messages']:,}",
                      f"{f['mine']:,}", f["speakers"])
    console.print(files)
    lines = [
        f"{report['mine']:,} of {report['messages']:,} text messages are yours ({report['share_mine']:.0%}); "
        f"you write in: {', '.join(f'{k} {v:,}' for k, v in report['languages'].items()) or '-'}",
        f"trained on: {report['conversations']:,} sessions, {report['turns']['assistant']:,} turns of yours "
        f"({report['trained_chars']:,} characters); context only: {report['turns']['user']:,} turns of others "
        f"({report['context_chars']:,} characters)",
        "left out, messages: " + (", ".join(f"{k} ({v:,})" for k, v in report["dropped"].items()) or "none"),
        "left out, sessions: " + (", ".join(f"{k} ({v:,})" for k, v in report["sessions_left_out"].items()) or "none"),
        "personal data replaced: " + (", ".join(f"{k[4:]} {v:,}" for k, v in report["scrubbed"].items() if v)
                                      or "none found"),
    ]
    if report["block_list"]:
        lines.append(f"block list: {report['block_list']}")
    for line in lines:
        console.print(line, markup=False, highlight=False)
    for i, conversation in enumerate(report["examples"], 1):
        console.print(f"example {i} (scrubbed):", markup=False)
        for m in conversation:
            who = "you" if m["role"] == "assistant" else "them"
            console.print(f"  {who:>4} › " + m["content"].replace("\n", " / "), markup=False, highlight=False)


STYLE_COLUMNS = (("chars_median", "median chars", "{:.0f}"), ("chars_p90", "p90", "{:.0f}"),
                 ("emoji", "emoji", "{:.0%}"), ("question", "?", "{:.0%}"), ("exclamation", "!", "{:.0%}"),
                 ("lower_start", "lower-case start", "{:.0%}"), ("distinct_1", "distinct-1", "{:.3f}"),
                 ("distinct_2", "distinct-2", "{:.3f}"), ("char3_cosine", "char 3-gram sim.", "{:.3f}"),
                 ("distance", "style distance", "{:.3f}"))


def print_style(result: dict) -> None:
    """The style comparison (owngpt/evaluate/style.py) as a table: one row per set of replies."""
    from rich.table import Table

    from owngpt.console import console as make_console

    table = Table(title=f"does it sound like you? {result['texts']} replies each, at held-out points")
    table.add_column("replies")
    for _, title, _ in STYLE_COLUMNS:
        table.add_column(title, justify="right")
    table.add_column("perplexity", justify="right")
    for name, row in result["rows"].items():
        ppl = result["perplexity"].get(name)
        table.add_row(name, *(fmt.format(row[key]) for key, _, fmt in STYLE_COLUMNS),
                      f"{ppl['perplexity']:.1f}" if ppl else "-")
    console = make_console()
    console.print(table)
    console.print("style distance: 0 = indistinguishable from your real replies by length, emoji, punctuation and "
                  "character 3-grams; perplexity: on your held-out turns", markup=False)
    for ex in result.get("examples", [])[:3]:
        console.print(f"  them › {ex['context']}".replace("\n", " / "), markup=False, highlight=False)
        for name, text in ex.items():
            if name != "context":
                console.print(f"    {name} › {text}".replace("\n", " / "), markup=False, highlight=False)


def print_clone(report: dict) -> None:
    """What the clone run did, then the style comparison."""
    from owngpt.console import console as make_console

    console = make_console()
    pre, sft, data = report.get("pretrain"), report["sft"], report["data"]
    if pre:
        console.print(f"pretrain: {pre['steps']:,} steps, {pre['tokens']:,} tokens, best val loss "
                      f"{pre['best_val_loss']:.3f}", markup=False)
    console.print(f"sessions: {data['train']:,} train, {data['val']:,} val, {data['test']:,} test; sft: "
                  f"{sft['steps']:,} steps, best val loss {sft['best_val_loss']:.3f}", markup=False)
    print_style(report["eval"])
    secs = report["seconds"]
    console.print("minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in secs.items()), markup=False)
