"""`owngpt export-gguf`: a run as one GGUF file (weights, tokenizer, chat template) for llama.cpp and Ollama."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from owngpt.cli import app, options


@app.command("export-gguf", help="Write a run's model, tokenizer and chat template as one GGUF file that llama.cpp "
             "(llama-cli -m FILE) and Ollama (FROM ./FILE in a Modelfile) run. Preset gpt2 becomes llama.cpp's "
             "GPT-2 architecture, preset modern its Llama architecture; settings neither can express are refused.")
def export_gguf(
    run: str = typer.Argument(..., help="A run folder (its best, else latest checkpoint) or a checkpoint folder."),
    file: Path = typer.Argument(..., help="The .gguf file to write (replaced if it exists)."),
    dtype: str = typer.Option("f32", "--dtype", help="Matrices' type: f32 (exact), f16, bf16 (half the size; bf16 "
                              "is fast on CPUs with native bf16) or q8_0 (8-bit blocks, about a quarter of f32). "
                              "Norms, biases and the position table stay f32."),
    adapter: Optional[str] = options.adapter(),
) -> None:
    from owngpt.export.gguf import export_run_gguf

    started = time.perf_counter()
    types = export_run_gguf(run, file, dtype, adapter=adapter)
    size = file.stat().st_size / 1e6
    counts = {t: list(types.values()).count(t) for t in sorted(set(types.values()))}
    typer.echo(f"wrote {file} ({size:.1f} MB, {len(types)} tensors: "
               + ", ".join(f"{n} {t}" for t, n in counts.items()) + f") in {time.perf_counter() - started:.1f}s")
    typer.echo(f"run it: llama-cli -m {file} -cnv   or Ollama: echo 'FROM ./{file.name}' > Modelfile && "
               f"ollama create mymodel -f Modelfile")
