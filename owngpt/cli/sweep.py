"""`owngpt sweep`: hyperparameter search with Optuna over pretraining runs; prints the trials as a table."""

from __future__ import annotations

from typing import List

import typer

from owngpt.cli import app


@app.command(help="Search pretraining hyperparameters (learning rate, batch size, depth/width, dropout, warmup) "
             "with Optuna (TPE, median pruning on val loss), each trial a run in OUT/trial_NNN; run the same command "
             "again to resume. Writes OUT/results.md, results.csv, importance.png and best.yaml (for "
             "`owngpt pretrain --config OUT/best.yaml`).")
def sweep(
    data: str = typer.Option(..., "--data", help="Prepared data folder (from `owngpt prepare`) with a validation split."),
    out: str = typer.Option(..., "--out", help="Sweep folder: study.sqlite, trial_NNN/ run folders, results, best.yaml."),
    preset: str = typer.Option("tiny-cpu", "--preset", "--config", help="Preset (tiny-cpu, baby-gpt, small, gpt2-124m) "
                               "or a YAML file that every trial starts from."),
    trials: int = typer.Option(20, "--trials", help="Trials to finish in the study, counting earlier sessions "
                               "(complete, pruned or failed; interrupted trials are continued and do not count)."),
    trial_time: str = typer.Option("2m", "--trial-time", help="Wall-clock budget of each trial (train.max_time), e.g. "
                                   "90s or 5m; '' keeps the preset's step budget."),
    time: str = typer.Option("", "--time", help="Start no trial after this much time in this invocation (e.g. 30m); "
                             "the last one may run a --trial-time past it. Default: no limit."),
    seed: int = typer.Option(0, "--seed", help="Seed of the TPE sampler (the trials' training seed is train.seed)."),
    set_: List[str] = typer.Option([], "--set", help="Fix a setting for every trial, e.g. --set train.eval_interval=100; "
                                   "a searched setting given here is not searched (repeatable)."),
    search: List[str] = typer.Option([], "--search", help="Change what is searched: KEY=LOW:HIGH, KEY=LOW:HIGH:log, "
                                     "KEY=A,B,C or KEY=off, e.g. --search train.lr=3e-4:3e-3:log "
                                     "--search model.n_layer=2,4 (repeatable)."),
    prune: bool = typer.Option(True, "--prune/--no-prune", help="Stop trials whose val loss is worse than the median "
                               "of earlier trials at the same step (after 3 finished trials)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    from owngpt.evaluate.sweep import SweepConfig, run_sweep

    cfg = SweepConfig(data=data, out=out, preset=preset, trials=trials, trial_time=trial_time, time=time, seed=seed,
                      overrides=tuple(set_), search=tuple(search), prune=prune, quiet=quiet)
    result = run_sweep(cfg, echo=typer.echo)
    print_results(result)


def print_results(result) -> None:
    """Every trial of the study as a table (the best one in bold green), each unusual ending below it (pruned,
    interrupted, failed), then where the outputs are."""
    from rich import box
    from rich.table import Table

    from owngpt.console import console as make_console, styled
    from owngpt.evaluate.sweep_results import format_cell

    columns = ["trial", "state", "val_loss", *result.keys, "seconds"]
    cells = [[format_cell(k, row[k]) for k in columns] for row in result.rows]
    table = Table(title=f"owngpt sweep: {result.out}", show_header=True, box=box.SIMPLE_HEAD, padding=(0, 1),
                  pad_edge=False, collapse_padding=True, show_edge=False)
    for i, name in enumerate(columns):  # settings by their short names (lr, n_layer); the files keep the full keys
        header = "sec" if name == "seconds" else name.split(".")[-1].replace("_", " ")
        widest = max([len(row[i]) for row in cells] + [len(word) for word in header.split()])  # a header may wrap
        table.add_column(header, justify="left" if name == "state" else "right", width=widest)
    for row, line in zip(result.rows, cells):
        table.add_row(*line, style="bold green" if row["trial"] == result.best_trial else None)
    console = make_console()
    console.print(table)
    for row in result.rows:
        if row["note"]:
            console.print(f"trial {row['trial']}: {row['note']}")
    console.print(f"{result.stopped_reason}; {result.ran} trial(s) run now, {result.finished} finished in the study")
    for note in result.notes:
        console.print(styled(("· ", "cyan"), note))
    console.print(f"tables: {result.out}/results.md, {result.out}/results.csv")
