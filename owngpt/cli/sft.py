"""`owngpt sft`: fine-tune a pretrained checkpoint into a chat model (full or LoRA, persona, MMI backward)."""

from __future__ import annotations

from typing import List, Optional

import typer

from owngpt.cli import app, options


@app.command(help="Fine-tune a pretrained checkpoint on conversations so it chats (loss on assistant tokens only).")
def sft(
    base: str = typer.Option(..., "--base", help="Pretrained run folder (its best checkpoint) or checkpoint folder."),
    data: List[str] = typer.Option(
        ["builtin:chitchat"], "--data",
        help="Conversations: a folder from `owngpt prepare`, a messages/ShareGPT JSONL, chitchat:FILE, "
        "builtin:chitchat, builtin:chatterbot-en/zh, or a chat export (with --me). Repeat for several.",
    ),
    out: str = typer.Option("runs/sft", "--out", help="Run folder for checkpoints, metrics, plots and reports."),
    persona: Optional[str] = typer.Option(
        None, "--persona", help="Persona YAML/Markdown: mixes identity conversations in and sets the system prompt."
    ),
    identity: int = typer.Option(0, "--identity", help="How many identity conversations to generate from the persona "
                                 "(0 = enough for --identity-share of the training text, at least 500)."),
    identity_share: float = typer.Option(0.15, "--identity-share", help="With --identity 0: the share of training text "
                                         "that identity conversations make up."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters only (small file in RUN/adapter)."),
    lora_rank: int = typer.Option(8, "--lora-rank", help="LoRA rank r."),
    lora_alpha: float = typer.Option(16.0, "--lora-alpha", help="LoRA alpha (the update is scaled by alpha / r)."),
    lora_dropout: float = typer.Option(0.05, "--lora-dropout", help="Dropout on the adapter input."),
    lora_targets: str = typer.Option("c_attn,c_proj,c_fc", "--lora-targets", help="Comma-separated Linear names to adapt."),
    reverse: bool = typer.Option(False, "--reverse", help="Train the backward model (reply → context) for `chat --mmi`."),
    chat_format: str = typer.Option("keep", "--chat-format", help="keep the base's chat format, or chatml: move a "
                                    "model imported in GPT2-chitchat's format to ChatML (system prompt, persona)."),
    max_conversations: int = typer.Option(0, "--max-conversations", help="Use at most this many conversations (0 = all)."),
    me: List[str] = options.me(),
    config: str = typer.Option("sft", "--config", help="Training preset name or YAML (its train: section is used)."),
    set_: List[str] = typer.Option([], "--set", help="Override a training setting, e.g. --set train.lr=1e-4 (repeatable)."),
    steps: Optional[int] = options.steps(),
    time: Optional[str] = options.time(),
    resume: Optional[str] = options.resume(),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    from owngpt.config import load_run_config
    from owngpt.model.lora import LoRAConfig
    from owngpt.train.sft import SFTConfig, sft as run_sft

    overrides = list(set_) + [f"train.out_dir={out}", *options.budget_overrides(steps, time, resume)]
    train_cfg = load_run_config(config, overrides).train
    adapters = LoRAConfig(rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, targets=lora_targets) if lora else None
    cfg = SFTConfig(
        base=base, data=options.owned(list(data), me), persona=persona or "", identity_conversations=identity,
        identity_share=identity_share, lora=adapters, reverse=reverse, max_conversations=max_conversations,
        chat_format=chat_format,
    )
    result, report = run_sft(cfg, train_cfg, quiet=quiet, echo=typer.echo)
    data_report = report["data"]
    typer.echo(
        f"conversations: {report['train_conversations']} train, {report['val_conversations']} val; "
        f"rejected {data_report['rejected']} (see {out}/sft_report.json); trainable parameters {report['trainable_parameters']:,}"
    )
    typer.echo(f"best val loss {result.best_val_loss:.4f} after {result.steps} steps → {out}")
    if lora:
        typer.echo(f"adapter: {out}/adapter  (use: owngpt chat {base} --adapter {out}/adapter)")
