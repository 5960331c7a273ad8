"""`owngpt clone`: your chat exports → a model that answers in your voice (read, pretrain, sft, evaluate, chat)."""

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
    from owngpt.cli.reports import print_dry_run
    from owngpt.clone import CloneConfig, read_exports, run_clone

    chats = options.chat_options(me, session_gap, groups, date_order, block)
    cfg = CloneConfig(exports=list(exports), chats=chats, out=out, base=base or "", lang=lang or "",
                      pretrain_data=list(pretrain_data), pretrain_time=pretrain_time, sft_time=sft_time,
                      vocab_size=vocab_size, persona=persona or "", eval_samples=eval_samples, seed=seed,
                      pretrain_overrides=list(set_), sft_overrides=list(sft_set))
    if dry_run:
        print_dry_run(read_exports(cfg)[0])
        return
    report = run_clone(cfg, echo=lambda line: typer.secho(line, bold=True), quiet=quiet)
    print_clone(report)
    from owngpt.cli.chat import offer_chat

    offer_chat(f"{out}/chat", seed=seed, start=not no_chat)


def print_clone(report: dict) -> None:
    """What the clone run did, then the style comparison."""
    from owngpt.cli.reports import print_style
    from owngpt.console import console as make_console

    console = make_console()
    pre, sft, data = report.get("pretrain"), report["sft"], report["data"]
    if pre:
        console.print(f"pretrain: {pre['steps']:,} steps, {pre['tokens']:,} tokens, best val loss "
                      f"{pre['best_val_loss']:.3f}")
    console.print(f"sessions: {data['train']:,} train, {data['val']:,} val, {data['test']:,} test; sft: "
                  f"{sft['steps']:,} steps, best val loss {sft['best_val_loss']:.3f}")
    if "skipped" in report["eval"]:
        console.print(f"evaluation skipped: {report['eval']['skipped']}")
    else:
        print_style(report["eval"])
    secs = report["seconds"]
    console.print("minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in secs.items()))
