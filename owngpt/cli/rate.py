"""`owngpt rate`: blind human rating of two or more chat models in the browser, and its results (--results)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from owngpt.chat.settings import CHAT_DEFAULTS
from owngpt.cli import app, options
from owngpt.errors import OwnGPTError


@app.command(help="Blind human rating: every model replies once to every prompt (stored in an SQLite file), then a "
             "page at http://HOST:PORT/ shows raters a prompt and two models' replies side by side, in random "
             "left/right order, without saying which model wrote which. `owngpt rate --results DB` prints win "
             "rates with 95% intervals and, with three or more models, a Bradley-Terry ranking.")
def rate(
    runs: List[str] = typer.Argument(None, help="Run folders (their best checkpoint) or checkpoint folders: the models "
                                     "to compare, two or more. Every pair of them is rated on every prompt."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="The prompts: a text file with one prompt per line, "
                                           "or a .jsonl file with {\"prompt\": \"...\"} or {\"messages\": [...]} per "
                                           "line."),
    db: Path = typer.Option(Path("ratings.sqlite"), "--db", help="The rating database (one SQLite file: prompts, "
                            "models, replies, raters, judgements). Made if missing; an existing one must be for the "
                            "same prompts, models and settings, and rating goes on where it stopped."),
    results: Optional[Path] = typer.Option(None, "--results", help="Print the results of this rating database "
                                           "instead of serving the page."),
    as_json: bool = typer.Option(False, "--json", help="With --results: print the results as JSON."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="With --results: bootstrap resamples of the judgements "
                                  "for the ranking's 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the replies (each is the reply `owngpt chat --seed SEED` "
                             "gives to that prompt) and, with --results, of the bootstrap."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The default answers this machine "
                             "only; 0.0.0.0 lets raters on your network in (anyone who can reach it can rate)."),
    port: int = typer.Option(8001, "--port", help="Port to listen on."),
    temperature: float = options.temperature(CHAT_DEFAULTS.temperature),
    top_k: int = options.top_k(CHAT_DEFAULTS.top_k),
    top_p: float = options.top_p(CHAT_DEFAULTS.top_p),
    repetition_penalty: float = options.repetition_penalty(CHAT_DEFAULTS.repetition_penalty),
    max_new_tokens: int = options.max_new_tokens(CHAT_DEFAULTS.max_new_tokens, "per reply; at most half the context"),
    device: str = options.device(),
    dtype: str = options.dtype(),
) -> None:
    from owngpt.evaluate.rating import RatingDB, results as rating_results

    runs = list(runs or [])
    if results is not None:
        if runs or prompts is not None:
            raise OwnGPTError("--results prints a database's results: give it alone (owngpt rate --results DB)")
        if bootstrap < 1:
            raise OwnGPTError(f"--bootstrap must be at least 1, not {bootstrap}")
        with RatingDB.open(results) as rating_db:
            report = rating_results(rating_db, bootstrap, seed)
        if as_json:
            typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            print_results(report)
        return
    if len(runs) < 2 or prompts is None:
        raise OwnGPTError("give two or more runs and a prompts file (owngpt rate RUN_A RUN_B --prompts FILE), or "
                          "--results DB for the results")
    if not 0 <= port <= 65535:
        raise OwnGPTError(f"--port must be from 0 to 65535, not {port}")
    generation = {"seed": seed, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                  "repetition_penalty": repetition_penalty, "max_new_tokens": max_new_tokens}
    rating_db = open_session(runs, prompts, db, generation, device=device, dtype=dtype)
    try:
        try:
            from owngpt.serve.rating import serve_rating
        except ImportError as e:
            raise OwnGPTError(f"the rating page needs the serve extra ({e.name} is missing): "
                              "pip install 'owngpt[serve]'") from None
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1") else host
        n_prompts, n_models, n_items = len(rating_db.prompts()), len(rating_db.models()), rating_db.item_count()
        typer.echo(f"rating page at http://{shown}:{port}/ : {n_items} items ({n_prompts} prompts x "
                   f"{_count(n_items // n_prompts, 'pair')} of {n_models} models) per rater; judgements go to {db}; "
                   f"results: owngpt rate --results {db}", err=True)
        if host not in ("127.0.0.1", "::1", "localhost"):
            typer.secho(f"note: listening on {host}: anyone who can reach this machine can open the page and rate",
                        fg=typer.colors.YELLOW, err=True)
        serve_rating(rating_db, host, port)
    finally:
        rating_db.close()


def open_session(runs: list[str], prompts: Path, db: Path, generation: dict[str, Any], *, device: str = "auto",
                 dtype: str = "auto"):
    """The rating database for these runs and prompts (made or checked), every reply generated into it."""
    from owngpt.chat.reply import load_reply_model
    from owngpt.chat.settings import chat_generation_config
    from owngpt.evaluate.rating import RatedModel, RatingDB, checkpoint_sha256, generate_replies, read_prompts
    from owngpt.serve.models import model_id

    for run in runs:
        if not Path(run).exists():
            raise OwnGPTError(f"run {run} does not exist: give run folders (e.g. runs/sft) or checkpoint folders")
    prompt_list = read_prompts(prompts)
    shas = [checkpoint_sha256(run) for run in runs]
    names = [model_id(run) for run in runs]
    names = [n if names.count(n) == 1 else f"{n}-{s[:8]}" for n, s in zip(names, shas)]
    models = [RatedModel(n, str(run), s) for n, run, s in zip(names, runs, shas)]
    gen = chat_generation_config(**generation)
    rating_db = RatingDB.create_or_check(db, prompt_list, models, generation)
    run_of = {m.sha256: m.run for m in models}  # load from the paths given now (the stored ones may have moved)
    try:
        made = generate_replies(rating_db, lambda m: load_reply_model(run_of[m.sha256], device=device, dtype=dtype),
                                gen, progress=lambda line: typer.echo(line, err=True))
    except BaseException:
        rating_db.close()
        raise
    if made:
        typer.echo(f"{made} replies stored in {db}", err=True)
    return rating_db


def print_results(report: dict[str, Any]) -> None:
    """The results as tables (the --json has every figure)."""
    from rich import box
    from rich.table import Table

    from owngpt.console import console as make_console

    out = make_console()
    raters = report["raters"]
    out.print(f"{report['database']}: {len(report['models'])} models, {report['prompts']} prompts, "
              f"{_count(report['judgements'], 'judgement')} by {_count(len(raters), 'rater')}"
              f"{' (' + ', '.join(raters) + ')' if 0 < len(raters) <= 6 else ''}", soft_wrap=True)
    if not report["judgements"]:
        out.print("no judgements yet: open the rating page (owngpt rate RUN_A RUN_B --prompts FILE) and rate")
        return
    pairs = Table(title="model A against model B: A's win rate (ties and both-bad count as half a win; 95% Wilson "
                  "score interval)", title_justify="left", box=box.SIMPLE, pad_edge=False)
    for col in ("model A", "model B", "win", "loss", "tie", "both bad", "win rate", "95% CI"):
        pairs.add_column(col, justify="left" if col.startswith("model") else "right", overflow="fold",
                         no_wrap=not col.startswith("model"))
    for p in report["pairs"]:
        pairs.add_row(p["a"], p["b"], str(p["wins"]), str(p["losses"]), str(p["ties"]), str(p["both_bad"]),
                      f"{p['win_rate']:.1%}", f"{100 * p['low']:.1f}-{100 * p['high']:.1f}%")
    out.print(pairs)
    if report["ranking"]:
        bt = report["bradley_terry"]
        ranking = Table(title=f"Bradley-Terry ranking (Elo scale, mean 1000; 95% bootstrap interval over "
                        f"{bt['samples']} resamples, seed {bt['seed']})",
                        title_justify="left", box=box.SIMPLE, pad_edge=False)
        for col in ("rank", "model", "rating", "95% CI", "judgements", "win rate"):
            ranking.add_column(col, justify="left" if col == "model" else "right", overflow="fold",
                               no_wrap=col != "model")
        for r in report["ranking"]:
            ranking.add_row(str(r["rank"]), r["model"], f"{r['rating']:.0f}", f"{r['low']:.0f}-{r['high']:.0f}",
                            str(r["judgements"]), f"{r['win_rate']:.1%}")
        out.print(ranking)
        out.print("a rating gap of 100 means the higher model is expected to win 64% of their comparisons, 200: 76%; "
                  "where intervals overlap, the order may not be settled yet (rate more items)", soft_wrap=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
