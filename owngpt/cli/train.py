"""`owngpt pretrain`: train a GPT from scratch on a prepared data folder."""

from __future__ import annotations

from typing import List, Optional

import typer

from owngpt.cli import app, options


@app.command(help="Pretrain a GPT from scratch on a folder written by `owngpt prepare` (shards + tokenizer).")
def pretrain(
    data: str = typer.Option(..., "--data", help="Prepared data folder (manifest.json, tokens/, tokenizer/)."),
    config: str = typer.Option("tiny-cpu", "--config", help="Preset (tiny-cpu, baby-gpt, small, gpt2-124m) or a YAML file."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting, e.g. --set train.lr=3e-4 --set model.depth=4 (repeatable)."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder for checkpoints, metrics, summary and plots (default: the preset's train.out_dir)."),
    time: Optional[str] = options.time(),
    steps: Optional[int] = options.steps(),
    resume: Optional[str] = options.resume(),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Continue pretraining from this run/checkpoint "
        "(domain adaptation on your own text; prepare the data with `--tokenizer BASE/best/tokenizer`)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    from owngpt.config import load_run_config
    from owngpt.train.pretrain import pretrain as run_pretrain

    overrides = list(set_) + [f"train.data={data}"]
    if out is not None:
        overrides.append(f"train.out_dir={out}")
    overrides += options.budget_overrides(steps, time, resume)
    if init_from is not None:
        overrides.append(f"train.init_from={init_from}")
    result = run_pretrain(load_run_config(config, overrides), quiet=quiet, echo=typer.echo)
    typer.echo(f"stopped: {result.stopped_reason}; run folder: {result.run_dir}")
