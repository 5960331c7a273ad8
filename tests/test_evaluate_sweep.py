"""`owngpt sweep` (owngpt/evaluate/sweep*.py, owngpt/cli/sweep.py) and fit()'s on_eval hook: a sweep of tiny trials
that resumes (after a finished session and after a killed one), best.yaml trains, pruned trials are recorded, the
search space's syntax, and bad input."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from owngpt.config import load_run_config
from owngpt.errors import OwnGPTError
from owngpt.evaluate.sweep import SweepConfig, _Lock, run_sweep
from owngpt.evaluate.sweep_space import DEFAULT_SPACE, Param, parse_search, search_space, trial_overrides
from owngpt.train.loop import fit
from test_pipeline import invoke
from test_train_loop import cfg as loop_cfg, loaders, make_model, train_losses, write_corpus

optuna = pytest.importorskip("optuna")

# tiny trials: 6 steps, a validation every 3, a small model whose depth and width are still searched
TINY = ("train.max_steps=6", "train.eval_interval=3", "train.eval_batches=2", "train.batch_size=4",
        "model.block_size=32", "train.tensorboard=false", "train.device=cpu", "train.log_interval=1")
SMALL_SPACE = ("model.n_layer=1,2", "model.n_embd=32,64")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A prepared folder (character tokenizer) with train and val splits."""
    from owngpt.data.prepare import PrepareConfig, prepare

    rng = random.Random(0)
    words = "fox dog cat bird river hill garden market window letter music summer winter quick lazy".split()
    root = tmp_path_factory.mktemp("sweep")
    (root / "corpus").mkdir()
    for i in range(30):
        (root / "corpus" / f"n{i}.txt").write_text(" ".join(rng.choice(words) for _ in range(80)) + ".\n")
    prepare([str(root / "corpus")], root / "data", PrepareConfig(tokenizer_kind="char", split=(0.8, 0.2, 0.0),
                                                                 near_dup_threshold=0.0), progress=False)
    return root / "data"


def sweep_cfg(data: Path, out: Path, **kw) -> SweepConfig:
    base = dict(data=str(data), out=str(out), trials=1, trial_time="", overrides=TINY, search=SMALL_SPACE, quiet=True)
    base.update(kw)
    return SweepConfig(**base)


def study_of(out: Path):
    return optuna.load_study(study_name="owngpt-sweep", storage=f"sqlite:///{out / 'study.sqlite'}")


# ----------------------------------------------------------------------------- fit()'s hook


def test_on_eval_sees_every_validation_and_changes_nothing_when_it_says_go_on(tmp_path):
    data = write_corpus(tmp_path / "data")
    plain = fit(make_model(), *loaders(data), loop_cfg(), tmp_path / "plain", run_config={}, quiet=True)
    seen = []
    asked = fit(make_model(), *loaders(data), loop_cfg(), tmp_path / "asked", run_config={}, quiet=True,
                on_eval=lambda step, val: seen.append((step, val)) and False)
    assert seen == asked.val_history == plain.val_history  # steps 5, 10, 15, 20 and the same losses
    assert [s for s, _ in seen] == [5, 10, 15, 20]
    assert train_losses(tmp_path / "plain") == train_losses(tmp_path / "asked")
    assert asked.stopped_reason == plain.stopped_reason == "reached max_steps=20"


@pytest.mark.parametrize("answer", [True, "pruned: not good enough"])
def test_on_eval_stops_the_run_cleanly_when_it_says_stop(tmp_path, answer):
    from owngpt.checkpoint.format import latest_checkpoint

    data = write_corpus(tmp_path / "data")
    plain = fit(make_model(), *loaders(data), loop_cfg(), tmp_path / "plain", run_config={}, quiet=True)
    run = tmp_path / "stopped"
    result = fit(make_model(), *loaders(data), loop_cfg(), run, run_config={}, quiet=True,
                 on_eval=lambda step, val: answer if step == 10 else False)
    assert result.steps == 10 and result.val_history == plain.val_history[:2]
    reason = answer if isinstance(answer, str) else "stopped by the caller after the validation at step 10"
    assert result.stopped_reason == reason
    assert reason in (run / "summary.md").read_text()
    assert latest_checkpoint(run).name == "step_0000010"  # saved: resumable, and best/ holds its best
    assert (run / "best" / "meta.json").exists()
    same = train_losses(tmp_path / "plain")
    assert train_losses(run) == {s: same[s] for s in range(1, 11)}


# ----------------------------------------------------------------------------- the search space


def test_search_syntax_ranges_choices_and_off():
    assert parse_search("train.lr=1e-4:3e-3:log") == Param("train.lr", 1e-4, 3e-3, log=True)
    assert parse_search("train.warmup_steps=0:50") == Param("train.warmup_steps", 0, 50, integer=True)
    assert parse_search("model.n_layer=2, 4") == Param("model.n_layer", choices=(2, 4))
    assert parse_search("train.decay=cosine,linear") == Param("train.decay", choices=("cosine", "linear"))
    assert parse_search("model.dropout=off") == "model.dropout"
    assert Param("train.lr", 1e-4, 1e-2, log=True).spec() == "0.0001:0.01:log"
    for bad, words in [("train.lr", "KEY=SPEC"), ("train.lrr=1:2", "did you mean 'lr'"), ("train.lr=3e-3:1e-4", "below"),
                       ("train.lr=0:1:log", "LOW > 0"), ("model.n_layer=2", "--set model.n_layer"),
                       ("train.decay=a:b", "not a number"), ("model.n_layer=2,x", "model.n_layer must be int"),
                       ("train.data=a,b", "sets train.data itself"), ("lr=1:2", "'model.NAME' or 'train.NAME'")]:
        with pytest.raises(OwnGPTError, match=words):
            parse_search(bad)


def test_set_fixes_a_setting_and_search_changes_the_space():
    keys = [p.key for p in search_space(["train.lr=1e-3"], ["model.dropout=off", "train.weight_decay=0:0.2"])]
    assert keys == [p.key for p in DEFAULT_SPACE if p.key not in ("train.lr", "model.dropout")] + ["train.weight_decay"]
    with pytest.raises(OwnGPTError, match="both fixed"):
        search_space(["train.lr=1e-3"], ["train.lr=1e-4:1e-3"])
    with pytest.raises(OwnGPTError, match="nothing left to search"):
        search_space([], [f"{p.key}=off" for p in DEFAULT_SPACE])


def test_trial_overrides_keep_the_config_valid():
    base = load_run_config("tiny-cpu", ["model.n_kv_head=2"])  # 4 heads of 32 in 2 groups
    over = trial_overrides({"train.lr": 2e-3, "model.n_embd": 192}, base, fixed=set())
    assert over == ["train.lr=0.002", "model.n_embd=192", "train.min_lr=0.0002", "model.n_head=6", "model.n_kv_head=3"]
    cfg = load_run_config("tiny-cpu", ["model.n_kv_head=2"] + over)
    assert (cfg.model.head_dim, cfg.model.n_kv_head, cfg.train.min_lr) == (32, 3, 2e-4)
    # what --set fixes is left alone
    assert trial_overrides({"train.lr": 2e-3, "model.n_embd": 64}, base, {"train.min_lr", "model.n_head"}) == [
        "train.lr=0.002", "model.n_embd=64"]


# ----------------------------------------------------------------------------- sweeps


def test_a_sweep_resumes_keeps_finished_trials_and_writes_a_best_config_pretrain_takes(data, tmp_path):
    out = tmp_path / "sweep"
    first = run_sweep(sweep_cfg(data, out, trials=1), echo=lambda line: None)
    assert first.ran == 1 and first.finished == 1 and first.best_trial == 0
    trial0 = out / "trial_000" / "metrics.jsonl"
    before = (trial0.stat().st_mtime_ns, trial0.read_text())
    assert "no importance plot" in " ".join(first.notes) and not (out / "importance.png").exists()

    result = invoke(["sweep", "--data", str(data), "--out", str(out), "--trials", "2", "--trial-time", "",
                     "--quiet", *[a for s in TINY for a in ("--set", s)], *[a for s in SMALL_SPACE for a in ("--search", s)]])
    assert result.exit_code == 0, result.output
    assert "owngpt sweep" in result.output and "best config" in result.output and "2 trials finished" in result.output
    trials = study_of(out).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert (trial0.stat().st_mtime_ns, trial0.read_text()) == before  # trial 0 was not run again
    assert trials[0].params != trials[1].params  # the resumed sampler does not draw the first session's settings
    assert (out / "trial_001" / "summary.md").exists() and (out / "importance.png").stat().st_size > 0

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1"] and {"val_loss", "train.lr", "model.n_layer", "seconds"} <= set(rows[0])
    best = min(trials, key=lambda t: t.value)
    assert float(rows[best.number]["val_loss"]) == pytest.approx(best.value)
    assert f"**{best.number}** (best)" in (out / "results.md").read_text()

    # best.yaml is the best trial's full config, in a new run folder
    best_cfg = load_run_config(str(out / "best.yaml"))
    trained = yaml.safe_load((out / f"trial_{best.number:03d}" / "config.yaml").read_text())
    saved = yaml.safe_load((out / "best.yaml").read_text())
    for section, skip in (("model", {"vocab_size"}), ("train", {"out_dir", "resume"})):
        assert {k: v for k, v in saved[section].items() if k not in skip} == {
            k: v for k, v in trained[section].items() if k not in skip}
    assert best_cfg.train.lr == best.params["train.lr"] and best_cfg.model.n_layer == best.params["model.n_layer"]
    assert Path(best_cfg.train.out_dir) == (out / "best_run").resolve()
    run = tmp_path / "again"
    result = invoke(["pretrain", "--config", str(out / "best.yaml"), "--data", str(data), "--steps", "2", "--out",
                     str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["n_embd"] == best.params["model.n_embd"]

    again = run_sweep(sweep_cfg(data, out, trials=2), echo=lambda line: None)  # nothing left to do
    assert again.ran == 0 and again.finished == 2 and len(study_of(out).trials) == 2


KILLER = textwrap.dedent("""
    import json, os, sys
    import owngpt.train.pretrain as P
    from owngpt.evaluate.sweep import SweepConfig, run_sweep

    real = P.pretrain

    def killed_after_first_validation(run_config, *, on_eval=None, **kw):
        def hook(step, val):
            on_eval(step, val)
            os._exit(9)  # as a kill would: the study keeps the trial RUNNING, the checkpoint of step 3 is on disk
        return real(run_config, on_eval=hook, **kw)

    P.pretrain = killed_after_first_validation
    cfg = json.loads(sys.argv[1])
    run_sweep(SweepConfig(**{**cfg, "overrides": tuple(cfg["overrides"]), "search": tuple(cfg["search"])}))
""")


def test_a_killed_trial_is_marked_failed_and_continued_from_its_checkpoint(data, tmp_path):
    out = tmp_path / "sweep"
    settings = dict(data=str(data), out=str(out), trials=1, trial_time="", overrides=list(TINY),
                    search=list(SMALL_SPACE), quiet=True)
    proc = subprocess.run([sys.executable, "-c", KILLER, json.dumps(settings)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 9, proc.stderr
    assert [t.state.name for t in study_of(out).trials] == ["RUNNING"]

    lines: list[str] = []
    result = run_sweep(sweep_cfg(data, out, trials=1), echo=lines.append)
    trials = study_of(out).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == trials[0].params and trials[1].user_attrs["continues"] == 0
    assert trials[1].user_attrs["run_dir"] == "trial_000" and not (out / "trial_001").exists()
    assert any("resuming from" in line and "step_0000003" in line for line in lines)
    assert sorted(trials[1].intermediate_values) == [3, 6]
    assert [r["step"] for r in map(json.loads, (out / "trial_000" / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]  # one run, resumed, not two
    assert result.finished == 1 and result.ran == 1
    assert result.rows[0]["note"] == "interrupted; continued in trial 1" and result.rows[1]["state"] == "complete"


def test_pruned_trials_are_recorded_as_pruned(data, tmp_path, monkeypatch):
    """Optuna's pruner decides (here: told to prune every trial after the first); the sweep stops the run at that
    validation, keeps its checkpoint and records the trial as pruned with its last val loss."""
    out = tmp_path / "sweep"
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number >= 1)
    result = run_sweep(sweep_cfg(data, out, trials=2, startup_trials=0), echo=lambda line: None)
    study = study_of(out)
    assert isinstance(study.pruner, optuna.pruners.BasePruner)
    t0, t1 = study.trials
    assert (t0.state.name, t1.state.name) == ("COMPLETE", "PRUNED")
    assert t1.value == t1.intermediate_values[3] and list(t1.intermediate_values) == [3]
    assert "pruned by the sweep's median pruner at step 3" in (out / "trial_001" / "summary.md").read_text()
    assert result.rows[1]["note"] == "pruned at step 3" and result.best_trial == 0
    assert "no importance plot" in " ".join(result.notes)  # one complete trial: nothing to compare


def test_bad_input_is_a_clear_error(data, tmp_path, capsys):
    with pytest.raises(OwnGPTError, match="--trials must be at least 1"):
        sweep_cfg(data, tmp_path / "s", trials=0)
    with pytest.raises(OwnGPTError, match="--trial-time"):
        sweep_cfg(data, tmp_path / "s", trial_time="soon")
    with pytest.raises(OwnGPTError, match="manifest.json not found"):
        run_sweep(sweep_cfg(tmp_path / "nothing", tmp_path / "s"))
    with pytest.raises(OwnGPTError, match="no data"):
        run_sweep(sweep_cfg("", tmp_path / "s"))
    with pytest.raises(OwnGPTError, match="did you mean 'n_layer'"):
        run_sweep(sweep_cfg(data, tmp_path / "s", overrides=(*TINY, "model.n_layerz=2")))
    assert not (tmp_path / "s").exists()  # refused before any work

    from owngpt.cli import main

    with pytest.raises(SystemExit) as exit_info:  # through the real entry point: one line, no traceback
        main(["sweep", "--data", str(data), "--out", str(tmp_path / "s"), "--trials", "0"])
    printed = capsys.readouterr()
    assert exit_info.value.code == 1 and "error: --trials must be at least 1" in printed.err
    assert "Traceback" not in printed.err + printed.out

    no_val = tmp_path / "noval"
    no_val.mkdir()
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["splits"]["val"] = {"documents": 0, "tokens": 0, "shards": []}
    (no_val / "manifest.json").write_text(json.dumps(manifest))
    (no_val / "tokenizer").mkdir()
    for shard in manifest["splits"]["train"]["shards"]:
        (no_val / shard["file"]).parent.mkdir(exist_ok=True)
        (no_val / shard["file"]).write_bytes((data / shard["file"]).read_bytes())
    with pytest.raises(OwnGPTError, match="no validation split"):
        run_sweep(sweep_cfg(no_val, tmp_path / "s"))


def test_other_search_settings_on_an_existing_sweep_and_a_second_process_are_refused(data, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    run_sweep(sweep_cfg(data, out, trials=1), echo=lambda line: None)
    with pytest.raises(OwnGPTError, match=r"other search settings \(search: .*model.n_layer.*another --out"):
        run_sweep(sweep_cfg(data, out, trials=2, search=("model.n_layer=1,3", "model.n_embd=32,64")))
    with pytest.raises(OwnGPTError, match="trial_time"):
        run_sweep(sweep_cfg(data, out, trials=2, trial_time="1m"))
    with _Lock(out):
        with pytest.raises(OwnGPTError, match="another `owngpt sweep`"):
            run_sweep(sweep_cfg(data, out, trials=2))
    assert len(study_of(out).trials) == 1
    monkeypatch.setitem(sys.modules, "optuna", None)  # not installed
    with pytest.raises(OwnGPTError, match=r'pip install "owngpt\[sweep\]"'):
        run_sweep(sweep_cfg(data, out, trials=2))


def test_ctrl_c_writes_the_results_and_the_next_run_continues_the_trial(data, tmp_path, monkeypatch):
    import owngpt.train.pretrain as P

    out, real = tmp_path / "sweep", P.pretrain

    def interrupted(run_config, *, on_eval=None, **kw):
        def hook(step, val):
            on_eval(step, val)
            raise KeyboardInterrupt
        return real(run_config, on_eval=hook, **kw)

    monkeypatch.setattr(P, "pretrain", interrupted)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep_cfg(data, out, trials=1), echo=lines.append)
    assert "run the same command again to resume" in lines[-1]
    assert "| fail |" in (out / "results.md").read_text() and "interrupted" in (out / "results.md").read_text()
    monkeypatch.setattr(P, "pretrain", real)
    result = run_sweep(sweep_cfg(data, out, trials=1), echo=lambda line: None)
    assert [r["state"] for r in result.rows] == ["fail", "complete"] and result.rows[1]["run"] == "trial_000"


def test_no_trial_starts_once_the_total_time_is_spent(data, tmp_path):
    result = run_sweep(sweep_cfg(data, tmp_path / "sweep", trials=3, time="0.001s"), echo=lambda line: None)
    assert result.ran == 0 and "--time 0.001s spent" in result.stopped_reason and "0 of 3" in result.stopped_reason
