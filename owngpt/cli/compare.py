"""`owngpt compare`: several runs measured on the same held-out split, in one Markdown report with plots."""

from __future__ import annotations

from typing import List

import typer

from owngpt.cli import app, options


@app.command(help="Compare runs (GPT, encoder-decoder, LSTM, n-gram; sizes; full vs LoRA; with and without persona) "
             "on the same held-out split: writes OUT/report.md with the scores of `owngpt eval`, bar charts, "
             "validation loss against tokens and wall time, the runs' settings, overfitting flags and sample "
             "replies side by side for the same prompts.")
def compare(
    runs: List[str] = typer.Argument(..., help="Run folders (or checkpoint folders) to compare."),
    data: List[str] = typer.Option(..., "--data", help="Prepared folder (or dialogue source) to measure on; repeatable."),
    out: str = typer.Option(..., "--out", help="Report folder: report.md, scores.png, curves.png, results.json."),
    split: str = typer.Option("test", "--split", help="Split of prepared folders to measure on."),
    samples: int = typer.Option(100, "--samples", help="Replies sampled per model for BLEU and distinct-n."),
    max_documents: int = typer.Option(0, "--max-documents", help="Score at most this many documents (0 = all)."),
    persona: str = typer.Option("", "--persona", help="Persona file (or example-en / example-zh): also measure name recall."),
    lang: str = typer.Option("en", "--lang", help="Language of the name questions: en or zh."),
    prompt: List[str] = typer.Option([], "--prompt", help="A user message every model answers in the report; repeatable."),
    title: str = typer.Option("Comparison", "--title", help="The report's title."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the same for every model)."),
    device: str = options.device(),
    dtype: str = options.dtype("float32", " Default float32 here, so figures compare across machines."),
) -> None:
    from owngpt.evaluate.compare import CompareConfig, compare as run_compare
    from owngpt.evaluate.suite import EvalConfig

    cfg = CompareConfig(eval=EvalConfig(split=split, samples=samples, seed=seed, max_documents=max_documents,
                                        persona=persona, lang=lang), prompts=list(prompt), title=title)
    run_compare(runs, data, out, cfg, device=device, dtype=dtype)
    typer.echo(f"report: {out}/report.md")
