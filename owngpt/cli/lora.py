"""`owngpt lora ...`: work with LoRA adapters (merge one into its base checkpoint)."""

from __future__ import annotations

import typer

from owngpt.cli import app

lora_app = typer.Typer(help="LoRA adapters: merge an adapter from `owngpt sft --lora` into its base model.",
                       no_args_is_help=True)
app.add_typer(lora_app, name="lora")


@lora_app.command("merge", help="Fold an adapter into its base weights and save a plain checkpoint (no adapter needed to chat).")
def merge(
    base: str = typer.Option(..., "--base", help="The base run folder (its best checkpoint) or checkpoint folder the adapter was trained on."),
    adapter: str = typer.Option(..., "--adapter", help="Adapter folder (adapter.json + adapter.safetensors), e.g. RUN/adapter from `owngpt sft --lora`."),
    out: str = typer.Option(..., "--out", help="New folder for the merged model; it must not exist or be empty."),
) -> None:
    from owngpt.checkpoint.adapter import merge_adapter_into_checkpoint

    path = merge_adapter_into_checkpoint(base, adapter, out)
    typer.echo(f"merged {adapter} into {base} → {path}  (use: owngpt chat {out})")
