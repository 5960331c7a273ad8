"""Hyperparameter search (`owngpt sweep`): an Optuna study (seeded TPE sampler, median pruner on validation loss)
whose every trial is a normal pretraining run into SWEEP_DIR/trial_NNN, bounded by a per-trial time.

The study lives in SWEEP_DIR/study.sqlite, so a stopped sweep resumes when the same command runs again: finished
trials are kept; a trial that a Ctrl-C or a kill interrupted is marked failed and its settings run again as a new
trial that continues the interrupted run folder from its last checkpoint (train.resume=auto), so the work done is
kept. The sweep then goes on until --trials trials have finished (complete, pruned or failed with an error; the
interrupted ones do not count). A lock file keeps a second sweep process out of the same folder, so a trial still
marked running in the study is known to be dead. --time bounds one invocation: no trial starts after it is spent
(the last one started may run a --trial-time past it). Running the same folder with other search settings (preset,
data, --set, --search, --trial-time) is refused: the trials would not be comparable; --trials, --time and --seed
may change. Does not handle several processes sharing one study (Optuna's distributed mode).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from owngpt.config import RunConfig, load_run_config, parse_duration
from owngpt.data.shards import read_manifest
from owngpt.errors import OwnGPTError
from owngpt.evaluate.sweep_results import require_optuna, write_outputs
from owngpt.evaluate.sweep_space import Param, fixed_keys, search_space, trial_overrides
from owngpt.io import output_dir

STUDY_NAME = "owngpt-sweep"
SETTINGS_ATTR = "owngpt_settings"  # the study's user attribute recording what it searches
MAX_ERRORS_IN_A_ROW = 3  # trials failing one after another with an error stop the sweep: it is not the settings


@dataclass
class SweepConfig:
    """Every option of `owngpt sweep`."""

    data: str  # a folder written by `owngpt prepare`, with a validation split
    out: str  # SWEEP_DIR: study.sqlite, trial_NNN/, results, importance.png, best.yaml
    preset: str = "tiny-cpu"  # preset name or YAML file every trial starts from
    trials: int = 20  # trials to finish in the study (counting earlier sessions)
    trial_time: str = "2m"  # each trial's train.max_time; "" = the preset's own budget
    time: str = ""  # no trial starts after this much time in this invocation; "" = no limit
    seed: int = 0  # the TPE sampler's seed
    overrides: tuple[str, ...] = ()  # --set: fixed for every trial, and not searched
    search: tuple[str, ...] = ()  # --search KEY=SPEC: change, add or turn off a searched range
    prune: bool = True  # median pruning on validation loss
    startup_trials: int = 3  # trials finished before pruning starts
    quiet: bool = False  # no progress bars

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise OwnGPTError(f"--trials must be at least 1, not {self.trials}")
        if self.startup_trials < 0:
            raise OwnGPTError(f"the pruner's startup trials must be 0 or more, not {self.startup_trials}")
        for name, flag in (("trial_time", "--trial-time"), ("time", "--time")):
            try:
                parse_duration(getattr(self, name))
            except OwnGPTError as e:
                raise OwnGPTError(f"{flag}: {e}") from None


@dataclass
class SweepResult:
    """What run_sweep() did and where its outputs are; the rows are every trial of the study."""

    rows: list[dict[str, Any]]
    keys: list[str]  # the searched settings, the rows' parameter columns
    best_trial: int | None
    best_val_loss: float | None
    finished: int  # trials that count towards --trials (complete, pruned, failed with an error)
    ran: int  # trials started in this invocation
    stopped_reason: str
    out: str
    notes: list[str] = field(default_factory=list)


def check_data(data: str) -> Path:
    """A prepared folder with a tokenizer and a validation split (the sweep ranks trials by val loss)."""
    if not data:
        raise OwnGPTError("no data: pass --data DIR, a folder written by `owngpt prepare`")
    path = Path(data)
    manifest = read_manifest(path)
    if not (path / "tokenizer").is_dir():
        raise OwnGPTError(f"{path}/tokenizer not found: run `owngpt prepare ... --out {path}` with a tokenizer")
    if manifest.get("splits", {}).get("val", {}).get("tokens", 0) <= 0:
        raise OwnGPTError(f"{path} has no validation split, and a sweep ranks trials by validation loss: prepare it "
                          "again with a val share, e.g. `owngpt prepare ... --split 0.9,0.1,0`")
    return path.resolve()


def base_overrides(cfg: SweepConfig, data: Path) -> list[str]:
    """The overrides every trial shares: the per-trial time (which, as pretrain's --time does, lifts the preset's
    step budget), then --set (so a --set train.max_steps=N bounds trials by steps too), then the data."""
    budget = [f"train.max_time={cfg.trial_time}", "train.max_steps=0"] if parse_duration(cfg.trial_time) > 0 else []
    return budget + list(cfg.overrides) + [f"train.data={data}"]


def _settings(cfg: SweepConfig, data: Path, space: tuple[Param, ...]) -> dict[str, Any]:
    """What makes trials comparable; a study made with other settings is refused."""
    return {"preset": cfg.preset, "data": str(data), "set": list(cfg.overrides),
            "search": {p.key: p.spec() for p in space}, "trial_time": cfg.trial_time}


def _check_settings(study: Any, settings: dict[str, Any], out: Path) -> None:
    saved = study.user_attrs.get(SETTINGS_ATTR)
    if saved is None:
        if study.get_trials(deepcopy=False):
            raise OwnGPTError(f"{out}/study.sqlite holds a study that `owngpt sweep` did not make; use a new --out")
        study.set_user_attr(SETTINGS_ATTR, settings)
        return
    changed = [f"{k}: {saved.get(k)!r} then, {settings[k]!r} now" for k in settings if saved.get(k) != settings[k]]
    if changed:
        raise OwnGPTError(f"{out} holds a sweep made with other search settings ({'; '.join(changed)}): run it with "
                          "the settings it was made with to resume it (only --trials, --time and --seed may change), "
                          "or start the new search in another --out")


class _Lock:
    """SWEEP_DIR/sweep.lock, held while a sweep runs, so that a second process cannot share (and confuse) the study.
    Unix only (fcntl); elsewhere nothing is locked."""

    def __init__(self, out: Path) -> None:
        self.path, self.file = out / "sweep.lock", None

    def __enter__(self) -> "_Lock":
        try:
            import fcntl
        except ImportError:
            return self
        self.file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            pid = self.file.read().strip()
            self.file.close()
            raise OwnGPTError(f"another `owngpt sweep` (process {pid or '?'}) is running in {self.path.parent}; wait "
                              "for it, stop it, or use another --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.file is not None:
            self.file.close()  # closing releases the lock


def _recover(study: Any, optuna: Any, echo: Callable[[str], None]) -> None:
    """Trials a dead process left running become failed; every interrupted trial (failed without an error) that no
    later trial continues yet is queued again with its settings and run folder, to continue from its checkpoint."""
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if t.state.name == "RUNNING":
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            echo(f"trial {t.number} was left running by a stopped sweep: marked failed, its run continues")
    continued = {t.user_attrs["continues"] for t in trials if "continues" in t.user_attrs}
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "FAIL" and "error" not in t.user_attrs and t.number not in continued and t.params:
            study.enqueue_trial(t.params, user_attrs={"continues": t.number,
                                                      "run_dir": t.user_attrs.get("run_dir", f"trial_{t.number:03d}")})


def _counted(study: Any) -> int:
    """Finished trials that count towards --trials: complete, pruned, or failed with an error."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state.name in ("COMPLETE", "PRUNED") or (t.state.name == "FAIL" and "error" in t.user_attrs))


def _training_seconds(run_dir: Path, fallback: float) -> float:
    """Training wall time of a run over all its sessions (metrics.jsonl's last `elapsed`), else `fallback`."""
    from owngpt.train.metrics import read_metrics

    path = run_dir / "metrics.jsonl"
    elapsed = [r["elapsed"] for r in read_metrics(path) if "elapsed" in r] if path.exists() else []
    return float(max(elapsed)) if elapsed else fallback


class _Sweep:
    """One invocation's state: the study, the space, and how one trial runs."""

    def __init__(self, cfg: SweepConfig, out: Path, data: Path, base: RunConfig, space: tuple[Param, ...],
                 study: Any, optuna: Any, echo: Callable[[str], None]) -> None:
        self.cfg, self.out, self.data, self.base, self.space = cfg, out, data, base, space
        self.study, self.optuna, self.echo = study, optuna, echo
        self.shared = base_overrides(cfg, data)

    def run_trial(self, trial: Any) -> str:
        """Train one trial and tell the study how it ended; returns the state's name. OwnGPTErrors fail the trial
        (recorded, the sweep goes on); Ctrl-C fails it without an error, so the next session continues it; any other
        exception fails it with the error and stops the sweep."""
        from owngpt.train.pretrain import pretrain

        TrialState = self.optuna.trial.TrialState
        continues = trial.user_attrs.get("continues")
        run_name = trial.user_attrs.get("run_dir") or f"trial_{trial.number:03d}"
        trial.set_user_attr("run_dir", run_name)
        started = time.perf_counter()
        try:
            params = {p.key: p.suggest(trial) for p in self.space}
            self.echo(f"trial {trial.number}" + (f" (continues trial {continues})" if continues is not None else "")
                      + ": " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in params.items()))
            overrides = self.shared + trial_overrides(params, self.base, fixed_keys(self.cfg.overrides))
            trial.set_user_attr("overrides", overrides)
            run_config = load_run_config(self.cfg.preset, overrides + [
                f"train.out_dir={self.out / run_name}", f"train.resume={'auto' if continues is not None else 'none'}"])
            reported: set[int] = set()
            if continues is not None:  # the interrupted trial's validations, which the continued run will not redo
                old = next(t for t in self.study.get_trials(deepcopy=False) if t.number == continues)
                for step, value in sorted(old.intermediate_values.items()):
                    trial.report(value, step)
                    reported.add(step)
            pruned: list[int] = []

            def on_eval(step: int, val: float) -> bool | str:
                if step not in reported and math.isfinite(val):
                    trial.report(val, step)
                    reported.add(step)
                if self.cfg.prune and trial.should_prune():
                    pruned.append(step)
                    return (f"pruned by the sweep's median pruner at step {step}: val loss {val:.4f} is worse than "
                            "the median of earlier trials at this step")
                return False

            def echo(line: str) -> None:  # the model's size and a resume; not each trial's summary
                if line.startswith(("model:", "resuming")):
                    self.echo("  " + line)

            result = pretrain(run_config, quiet=self.cfg.quiet, echo=echo, on_eval=on_eval)
        except OwnGPTError as e:
            trial.set_user_attr("error", str(e))
            self.study.tell(trial, state=TrialState.FAIL)
            self.echo(f"trial {trial.number} failed: {e}")
            return "FAIL"
        except KeyboardInterrupt:  # failed without an error attribute: the next session continues it
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as e:  # a bug: recorded (so not re-run), and the sweep stops with its traceback
            trial.set_user_attr("error", repr(e))
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        seconds = _training_seconds(self.out / run_name, time.perf_counter() - started)
        trial.set_user_attr("seconds", seconds)
        trial.set_user_attr("stopped", result.stopped_reason)
        if pruned:
            frozen = self.study.tell(trial, state=TrialState.PRUNED)
            self.echo(f"trial {trial.number}: pruned at step {pruned[0]} (val loss {frozen.value:.4f}), {seconds:.0f}s")
            return "PRUNED"
        value = result.best_val_loss if math.isfinite(result.best_val_loss) else float("inf")
        self.study.tell(trial, value)
        self.echo(f"trial {trial.number}: val loss {value:.4f} ({result.stopped_reason}), {seconds:.0f}s")
        return "COMPLETE"


def _open_study(cfg: SweepConfig, out: Path, optuna: Any) -> Any:
    """SWEEP_DIR/study.sqlite, created or loaded. The TPE sampler's seed is --seed plus the trials the study holds:
    a fresh sweep is reproducible, and a resumed one does not draw its first session's settings again."""
    storage = f"sqlite:///{(out / 'study.sqlite').resolve()}"
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials) if cfg.prune
              else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="minimize", pruner=pruner,
                                load_if_exists=True)
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.get_trials(deepcopy=False)))
    return study


def run_sweep(cfg: SweepConfig, *, echo: Callable[[str], None] = print) -> SweepResult:
    """Run (or resume) the sweep in cfg.out until cfg.trials trials have finished or cfg.time is spent; writes
    results.md, results.csv, importance.png and best.yaml there (also when stopped by Ctrl-C)."""
    optuna = require_optuna()
    data = check_data(cfg.data)
    space = search_space(cfg.overrides, cfg.search)
    base = load_run_config(cfg.preset, base_overrides(cfg, data))  # a wrong --set key fails here, before any trial
    if base.train.max_steps <= 0 and base.train.max_tokens <= 0 and not base.train.max_time:
        raise OwnGPTError("no budget for a trial: give --trial-time (e.g. 2m) or --set train.max_steps=N")
    out = output_dir(cfg.out)
    keys = [p.key for p in space]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the sweep says what happens itself
    try:
        with _Lock(out):
            fresh = not (out / "study.sqlite").exists()
            if fresh and any(out.glob("trial_[0-9][0-9][0-9]")):
                raise OwnGPTError(f"{out} holds trial folders but no study.sqlite (deleted?): start the sweep in "
                                  "another --out, or delete the trial_NNN folders")
            study = _open_study(cfg, out, optuna)
            _check_settings(study, _settings(cfg, data, space), out)
            _recover(study, optuna, echo)
            return _loop(cfg, out, data, base, space, keys, study, optuna, echo)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _loop(cfg: SweepConfig, out: Path, data: Path, base: RunConfig, space: tuple[Param, ...], keys: list[str],
          study: Any, optuna: Any, echo: Callable[[str], None]) -> SweepResult:
    sweep = _Sweep(cfg, out, data, base, space, study, optuna, echo)
    budget = parse_duration(cfg.time)
    deadline = time.monotonic() + budget if budget > 0 else math.inf
    ran, errors_in_a_row, reason = 0, 0, ""
    done = _counted(study)
    if done >= cfg.trials:
        echo(f"the study already has {done} finished trials (--trials {cfg.trials}): nothing to run")
    try:
        while True:
            done = _counted(study)
            if done >= cfg.trials:
                reason = f"{done} trials finished (--trials {cfg.trials})"
                break
            if time.monotonic() >= deadline:
                reason = f"--time {cfg.time} spent: no more trials started ({done} of {cfg.trials} finished)"
                break
            state = sweep.run_trial(study.ask())
            ran += 1
            errors_in_a_row = errors_in_a_row + 1 if state == "FAIL" else 0
            if errors_in_a_row >= MAX_ERRORS_IN_A_ROW:
                last = study.trials[-1].user_attrs.get("error", "")
                raise OwnGPTError(f"{errors_in_a_row} trials in a row failed, the last with: {last}")
            write_outputs(study, out, keys, cfg.preset, str(data), importance=False)
    except (KeyboardInterrupt, OwnGPTError):
        echo(f"sweep stopped: run the same command again to resume it (the study is {out / 'study.sqlite'})")
        write_outputs(study, out, keys, cfg.preset, str(data))
        raise
    rows, best, notes = write_outputs(study, out, keys, cfg.preset, str(data))
    return SweepResult(rows=rows, keys=keys, best_trial=best.number if best else None,
                       best_val_loss=best.value if best else None, finished=_counted(study), ran=ran,
                       stopped_reason=reason, out=str(out), notes=notes)
