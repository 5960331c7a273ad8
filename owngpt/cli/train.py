"""`owngpt pretrain`: train a GPT from scratch on a prepared data folder."""

from __future__ import annotations

from typing import List, Optional

import typer

from owngpt.cli import app


def budget_overrides(steps: int | None, time: str | None) -> list[str]:
    """--steps / --time as config overrides; --time without --steps bounds the run by time alone (the preset's
    step budget is lifted, and the learning rate decays over the time given)."""
    overrides = []
    if time is not None:
        overrides.append(f"train.max_time={time}")
        if steps is None:
            overrides.append("train.max_steps=0")
    if steps is not None:
        overrides.append(f"train.max_steps={steps}")
    return overrides


@app.command(help="Pretrain a GPT from scratch on a folder written by `owngpt prepare` (shards + tokenizer).")
def pretrain(
    data: str = typer.Option(..., "--data", help="Prepared data folder (manifest.json, tokens/, tokenizer/)."),
    config: str = typer.Option("tiny-cpu", "--config", help="Preset (tiny-cpu, baby-gpt, small, gpt2-124m) or a YAML file."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting, e.g. --set train.lr=3e-4 --set model.depth=4 (repeatable)."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder for checkpoints, metrics, summary and plots (default: the preset's train.out_dir)."),
    time: Optional[str] = typer.Option(None, "--time", help="Wall-clock budget such as 10m, 90s or 1h; without --steps the run is then bounded by time alone "
        "and the learning rate decays over it."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps (overrides train.max_steps)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="auto (continue the run folder's latest checkpoint), none, or a checkpoint path."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Continue pretraining from this run/checkpoint "
        "(domain adaptation on your own text; prepare the data with `--tokenizer BASE/best/tokenizer`)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    from owngpt.config import load_run_config
    from owngpt.train.pretrain import pretrain as run_pretrain

    overrides = list(set_) + [f"train.data={data}"]
    if out is not None:
        overrides.append(f"train.out_dir={out}")
    overrides += budget_overrides(steps, time)
    if resume is not None:
        overrides.append(f"train.resume={resume}")
    if init_from is not None:
        overrides.append(f"train.init_from={init_from}")
    result = run_pretrain(load_run_config(config, overrides), quiet=quiet, echo=typer.echo)
    typer.echo(f"stopped: {result.stopped_reason}; run folder: {result.run_dir}")
