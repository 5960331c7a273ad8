"""`owngpt baseline`: the models to compare a GPT with, each trained by one command on the same prepared folder."""

from __future__ import annotations

from typing import List

import typer

from owngpt.cli import app


@app.command(help="Train a baseline on a prepared folder, to compare your GPT with (`owngpt eval`, `owngpt compare`): "
             "ngram (an interpolated modified Kneser-Ney model counted on the same tokens), lstm (an LSTM language "
             "model) or seq2seq (an encoder-decoder Transformer: the encoder reads the dialogue history, the decoder "
             "writes the reply), or gpt (the same recipe with the GPT). Neural ones are pretrained on the documents, "
             "then fine-tuned on the conversations, with the same fit() as the GPT. The chat model is OUT/chat.")
def baseline(
    arch: str = typer.Argument(..., help="ngram | lstm | seq2seq | gpt"),
    data: str = typer.Option(..., "--data", help="A folder written by `owngpt prepare` (with a tokenizer)."),
    out: str = typer.Option(..., "--out", help="Run folder: OUT/chat (the chat model) and, for neural ones, OUT/pretrain."),
    pretrain_time: str = typer.Option("10m", "--pretrain-time", help="Neural models: pretraining wall time."),
    sft_time: str = typer.Option("5m", "--sft-time", help="Neural models: fine-tuning wall time."),
    persona: str = typer.Option("", "--persona", help="Persona file (or example-en / example-zh) whose identity chats "
                                "join the fine-tuning data (the n-gram's counts)."),
    order: int = typer.Option(5, "--order", help="ngram: the n of the n-gram (contexts of n - 1 tokens)."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation, batches and sampling."),
    override: List[str] = typer.Option([], "--set", help="Pretraining override, e.g. --set model.n_layer=2; repeatable."),
    sft_override: List[str] = typer.Option([], "--sft-set", help="Fine-tuning override, e.g. --sft-set train.lr=5e-4; "
                                           "repeatable."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    from owngpt.pipeline import BaselineConfig, train_baseline

    cfg = BaselineConfig(arch=arch, data=data, out=out, pretrain_time=pretrain_time, sft_time=sft_time,
                         persona=persona, order=order, seed=seed,
                         overrides=list(override), sft_overrides=list(sft_override))
    report = train_baseline(cfg, echo=typer.echo, quiet=quiet)
    typer.echo(f"done in {report['seconds']['total'] / 60:.1f} min: chat with `owngpt chat {out}/chat`, measure with "
               f"`owngpt eval {out}/chat --data {data}`")
