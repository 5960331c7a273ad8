"""`owngpt export-hf`: a run as a Hugging Face folder (GPT-2 or Llama layout, tokenizer, chat template)."""

from __future__ import annotations

from typing import Optional

import typer

from owngpt.cli import app, options

LAYOUT_NAMES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}


@app.command("export-hf", help="Write RUN as a Hugging Face folder that transformers' AutoModelForCausalLM and "
             "AutoTokenizer load with no custom code: GPT-2 layout for the gpt2 preset, Llama layout for the modern "
             "preset (GQA, tied or untied head), fp32 safetensors weights, tokenizer.json, chat_template.jinja (so "
             "apply_chat_template gives owngpt's ids) and generation_config.json (stops where owngpt stops).")
def export_hf(
    run: str = typer.Argument(..., help="A run folder (its best, else latest checkpoint) or a checkpoint folder."),
    directory: str = typer.Argument(..., help="Folder to write (created; files of the same names are replaced)."),
    adapter: Optional[str] = options.adapter(),
) -> None:
    from owngpt.export.hf_folder import export_run

    layout = export_run(run, directory, adapter=adapter)
    typer.echo(f"wrote {directory} ({LAYOUT_NAMES[layout]}); load it with "
               f"AutoModelForCausalLM.from_pretrained({directory!r}) and AutoTokenizer.from_pretrained({directory!r})")
