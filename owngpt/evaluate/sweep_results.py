"""What a sweep leaves for people: the trials as rows, SWEEP_DIR/results.md and results.csv, the parameter-importance
plot (importance.png) and the best trial's full settings as best.yaml (a config `owngpt pretrain --config` takes).

Rows are read back from the study (the SQLite file), so they cover every session of a resumed sweep.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import yaml

from owngpt.config import load_run_config, to_dict
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text

BEST_RUN = "best_run"  # best.yaml's train.out_dir, inside the sweep folder


def require_optuna() -> Any:
    """The optuna module, or an error saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise OwnGPTError('owngpt sweep needs Optuna, which is not installed: pip install "owngpt[sweep]"') from None
    return optuna


def trial_note(trial: Any, continued_in: dict[int, int]) -> str:
    """Why a trial ended as it did, in a few words: pruned at step N, diverged, its error, or interrupted."""
    state = trial.state.name
    if state == "PRUNED":
        return f"pruned at step {trial.last_step}" if trial.last_step is not None else "pruned"
    if state == "COMPLETE":
        return "diverged" if str(trial.user_attrs.get("stopped", "")).startswith("diverged") else ""
    if state == "FAIL":
        if "error" in trial.user_attrs:
            return f"error: {trial.user_attrs['error']}"
        later = continued_in.get(trial.number)
        return "interrupted" + (f"; continued in trial {later}" if later is not None else "")
    return {"RUNNING": "running", "WAITING": "queued (continues an interrupted trial)"}.get(state, "")


def trial_rows(study: Any, keys: list[str]) -> list[dict[str, Any]]:
    """One row per trial: trial, state, val_loss (the best validation loss; a pruned trial's last), each searched
    setting (blank where a trial never chose it), seconds of training, note and run folder."""
    trials = study.get_trials(deepcopy=False)
    continued_in = {t.user_attrs["continues"]: t.number for t in trials if "continues" in t.user_attrs}
    rows = []
    for t in trials:
        value = t.value if t.state.name in ("COMPLETE", "PRUNED") else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "val_loss": value,
                     **{k: t.params.get(k) for k in keys}, "seconds": t.user_attrs.get("seconds"),
                     "note": trial_note(t, continued_in), "run": t.user_attrs.get("run_dir", "")})
    return rows


def best_trial(study: Any) -> Any | None:
    """The complete trial with the lowest finite val loss, or None."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None
            and math.isfinite(t.value)]
    return min(done, key=lambda t: (t.value, t.number)) if done else None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-2 or value == 0 else f"{value:.3g}"
    return str(value)


def format_cell(key: str, value: Any) -> str:
    """A table cell: losses to 4 decimals, small numbers (learning rates) to 3 significant figures, seconds whole."""
    if key == "seconds" and isinstance(value, (int, float)):
        return f"{value:.0f}"
    return _cell(value)


def write_tables(out: Path, rows: list[dict[str, Any]], best: Any | None, notes: list[str]) -> None:
    """SWEEP_DIR/results.csv (full precision) and results.md (rounded, best trial marked, notes below)."""
    keys = list(rows[0]) if rows else ["trial", "state", "val_loss", "seconds", "note", "run"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    atomic_write_text(out / "results.csv", buf.getvalue())
    lines = ["# Sweep results", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [format_cell(k, row[k]).replace("|", "\\|") for k in keys]
        if best is not None and row["trial"] == best.number:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {note}" for note in notes] + [""]
    atomic_write_text(out / "results.md", "\n".join(lines))


def importance_plot(study: Any, out: Path) -> tuple[dict[str, float], str]:
    """(importances, a line saying what was drawn or why nothing was): SWEEP_DIR/importance.png, a bar per searched
    setting, from optuna.importance.get_param_importances over the complete trials (PED-ANOVA where this Optuna
    has it: no scikit-learn needed)."""
    optuna = require_optuna()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {}, (f"no importance plot: it needs at least 2 complete trials to compare and the sweep has "
                    f"{len(complete)} (pruned and failed trials do not count)")
    evaluator_cls = getattr(optuna.importance, "PedAnovaImportanceEvaluator", None)
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=evaluator_cls() if evaluator_cls is not None else None)
    except (ImportError, ValueError, RuntimeError) as e:
        return {}, f"no importance plot: Optuna could not compute importances ({e})"
    if not importances:
        return {}, "no importance plot: the complete trials share no searched setting"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]  # most important at the top
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5), dpi=100)
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance for val loss (share)")
    ax.set_title(f"parameter importance over {len(complete)} complete trials")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = out / "importance.png"
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    note = " (a rough guide with this few trials)" if len(complete) < 10 else ""
    return importances, f"importance plot: {path}{note}"


def write_best(study: Any, out: Path, preset: str, data: str) -> tuple[Any | None, str]:
    """(best trial, a line saying where its settings went): SWEEP_DIR/best.yaml, the full resolved config of the best
    complete trial, its run folder moved to SWEEP_DIR/best_run so that training with it starts a new run."""
    best = best_trial(study)
    if best is None:
        return None, "no best.yaml yet: no trial has completed"
    overrides = list(best.user_attrs.get("overrides", [])) + [f"train.out_dir={out.resolve() / BEST_RUN}",
                                                              "train.resume=auto", f"train.data={data}"]
    settings = to_dict(load_run_config(preset, overrides))
    header = (f"# owngpt sweep: the best trial ({best.number}, val loss {best.value:.4f}) of {out}.\n"
              f"# Train with it: owngpt pretrain --config {out / 'best.yaml'} --data {data} [--time 30m] [--out RUN]\n"
              f"# train.max_time / max_steps are the trial's budget; give a longer --time or --steps for a full run.\n")
    atomic_write_text(out / "best.yaml", header + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    return best, f"best config: {out / 'best.yaml'} (trial {best.number}, val loss {best.value:.4f})"


def write_outputs(study: Any, out: Path, keys: list[str], preset: str, data: str, *, importance: bool = True
                  ) -> tuple[list[dict[str, Any]], Any | None, list[str]]:
    """Every output file from the study as it is now: (rows, best trial, notes about best.yaml and the plot)."""
    best, best_note = write_best(study, out, preset, data)
    notes = [best_note]
    if importance:
        notes.append(importance_plot(study, out)[1])
    rows = trial_rows(study, keys)
    write_tables(out, rows, best, notes)
    return rows, best, notes
