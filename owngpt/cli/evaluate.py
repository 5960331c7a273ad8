"""`owngpt eval` (alias `owngpt evaluate`): perplexity and bits-per-byte of documents and assistant replies, BLEU and
distinct-n of sampled replies, persona name recall, the style comparison; one model, or an ensemble beside its
members."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from owngpt.cli import app, options

HELP = ("Evaluate a model on a held-out split: loss, perplexity and bits-per-byte of its documents; on its "
        "conversations the assistant tokens' perplexity and bits-per-byte, and BLEU (sacrebleu) and distinct-1/2 of "
        "replies sampled as `owngpt chat` would; with --persona the share of 'what is your name?' answers that "
        "contain the persona's name. Bits-per-byte compares models with different tokenizers. With --ensemble the "
        "table shows each member alone and the ensemble.")


def evaluate(
    checkpoint: str = typer.Argument(..., help="Run folder (its best checkpoint) or checkpoint folder."),
    data: List[str] = typer.Option(..., "--data", help="Prepared folder (its SPLIT documents and conversations) or "
                                   "dialogue source (conversations only); repeatable."),
    split: str = typer.Option("test", "--split", help="Split of prepared folders to evaluate on."),
    adapter: Optional[str] = options.adapter(),
    ensemble: List[str] = options.ensemble(),
    persona: Optional[str] = typer.Option(None, "--persona", help="Persona file: also measure name recall (50 questions)."),
    lang: str = typer.Option("en", "--lang", help="Language of the name questions: en or zh."),
    samples: int = typer.Option(100, "--samples", help="Replies to sample for BLEU and distinct-n."),
    max_documents: int = typer.Option(0, "--max-documents", help="Score at most this many documents of the split (0 = all)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of the table."),
    out: Optional[str] = typer.Option(None, "--out", help="Also write the results as JSON to this file."),
    device: str = options.device(),
    dtype: str = options.dtype("float32", " Default float32 here, so figures compare across machines."),
    style: bool = typer.Option(False, "--style", help="Does it sound like the data? Style of replies sampled at "
                               "held-out points against the real replies there (length, emoji, punctuation, "
                               "distinct-n, character 3-grams), with --base beside it."),
    base: Optional[str] = typer.Option(None, "--base", help="With --style: another model (e.g. the pretrained base) "
                                       "sampled and scored the same way, for comparison."),
    me: List[str] = options.me(),
) -> None:
    from owngpt.chat.reply import load_reply_model
    from owngpt.cli.reports import print_eval
    from owngpt.evaluate.suite import EvalConfig, evaluate_runs, with_ensemble_members

    cfg = EvalConfig(split=split, samples=samples, seed=seed, max_documents=max_documents, persona=persona or "",
                     lang=lang)
    if adapter and ensemble:
        from owngpt.errors import OwnGPTError

        raise OwnGPTError("--adapter and --ensemble together are not supported: merge the adapter first "
                          "(`owngpt lora merge`) and ensemble the merged checkpoint")
    specs = options.owned(list(data), me)
    models = {name: load_reply_model(path, adapter=adapter, device=device, dtype=dtype, ensemble=members)
              for name, path, members in with_ensemble_members(checkpoint, ensemble)}
    report = evaluate_runs(models, specs, cfg)
    if style:
        from owngpt.cli.reports import print_style
        from owngpt.evaluate.chat_eval import held_out_conversations
        from owngpt.evaluate.style import evaluate_style, style_config

        chat_model = next(iter(models.values()))
        compared = {"model": chat_model}
        if base:
            compared["base"] = load_reply_model(base, device=device, system=chat_model.system or "", dtype=dtype)
        report["style"] = evaluate_style(compared, held_out_conversations(specs, split), style_config(samples, seed))
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if as_json:
        typer.echo(text)
    else:
        print_eval(report)
        if style:
            print_style(report["style"])
    if out:
        from owngpt.io import atomic_write_text

        atomic_write_text(out, text)


app.command("eval", help=HELP)(evaluate)
app.command("evaluate", help="The same as `owngpt eval` (its earlier name).")(evaluate)
