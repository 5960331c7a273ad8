"""fit(): learning, exact resume after a kill, non-finite steps, early stopping, budgets, run artefacts."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from owngpt.config import ModelConfig, TrainConfig
from owngpt.data.loader import TokenBatches
from owngpt.model.gpt import GPT
from owngpt.train.metrics import read_metrics
from owngpt.train.loop import fit

VOCAB = 32
BLOCK = 16


def make_model(dropout: float = 0.1, seed: int = 0) -> nn.Module:
    """The real GPT (tiny), with dropout so that resume must restore the RNG too."""
    mcfg = ModelConfig(preset="gpt2", vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16,
                       dropout=dropout)
    torch.manual_seed(seed)
    return GPT(mcfg)


def write_corpus(root: Path) -> Path:
    """A learnable corpus: repeated 'sentences' of a small alphabet, as uint16 shards with a manifest."""
    rng = np.random.default_rng(0)
    words = [rng.integers(1, VOCAB, size=rng.integers(2, 6)) for _ in range(12)]
    def stream(n):
        out = []
        while len(out) < n:
            out.extend(words[rng.integers(0, len(words))].tolist() + [0])
        return np.array(out[:n], dtype=np.uint16)
    (root / "tokens").mkdir(parents=True)
    manifest = {"format": 1, "dtype": "uint16", "tokenizer_hash": "t", "vocab_size": VOCAB, "splits": {}}
    for split, n in (("train", 4000), ("val", 600)):
        stream(n).tofile(root / f"tokens/{split}_0000.bin")
        manifest["splits"][split] = {"documents": 1, "tokens": n,
                                     "shards": [{"file": f"tokens/{split}_0000.bin", "tokens": n, "sha256": ""}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def loaders(data: Path, batch: int = 4):
    return TokenBatches(data, "train", batch, BLOCK, seed=1), TokenBatches(data, "val", batch, BLOCK, seed=2)


def cfg(**kw) -> TrainConfig:
    base = dict(max_steps=20, lr=3e-3, min_lr=3e-4, warmup_steps=2, eval_interval=5, eval_batches=2, log_interval=1,
                batch_size=4, tensorboard=False, device="cpu", compile="off", threads=0, dtype="float32")
    base.update(kw)
    return TrainConfig(**base)


def train_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"}


@pytest.fixture
def data(tmp_path):
    return write_corpus(tmp_path / "data")


def test_loss_falls_and_artefacts_written(tmp_path, data):
    train, val = loaders(data)
    run = tmp_path / "run"
    result = fit(make_model(0.0), train, val, cfg(max_steps=60, eval_interval=20, tensorboard=True, lr=1e-2, min_lr=1e-3), run,
                 run_config={"model": {}, "train": {}}, quiet=True)
    losses = train_losses(run)
    assert result.steps == 60 and result.tokens == 60 * 4 * BLOCK
    assert np.mean([losses[s] for s in range(51, 61)]) < 0.7 * losses[1]  # from ~ln(32)=3.47 down a lot
    assert result.best_val_loss < 0.7 * losses[1]
    for name in ("config.yaml", "metrics.jsonl", "summary.md", "loss.png", "best/meta.json", "tb"):
        assert (run / name).exists(), name
    assert "best val loss" in (run / "summary.md").read_text()


def test_cpu_bf16_training(tmp_path, data):
    """bf16 autocast on a CPU (the default where AMX makes it fast; asked for here, so it runs on any CPU)."""
    from owngpt.runtime import autocast, cpu_has_bf16_matmul

    assert autocast(torch.device("cpu"), "auto")[1] == (torch.bfloat16 if cpu_has_bf16_matmul() else torch.float32)
    train, val = loaders(data)
    run = tmp_path / "run"
    model = make_model(0.0)
    result = fit(model, train, val, cfg(max_steps=40, eval_interval=20, lr=1e-2, min_lr=1e-3, dtype="bfloat16"), run,
                 run_config={}, quiet=True)
    losses = train_losses(run)
    assert np.mean([losses[s] for s in range(31, 41)]) < 0.8 * losses[1]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert "bfloat16" in (run / "summary.md").read_text() and result.best_val_loss < 0.8 * losses[1]


class Interrupt(Exception):
    pass


class DyingBatches(TokenBatches):
    """Raises after `die_after` batches: an in-process stand-in for a crash."""

    die_after = 10**9

    def next_batch(self):
        if self.batches >= self.die_after:
            raise Interrupt
        return super().next_batch()


@pytest.mark.parametrize("budget", [dict(max_steps=20), dict(max_steps=0, max_tokens=20 * 4 * BLOCK),
                                    dict(max_steps=20, optimizer="muon")], ids=["steps", "tokens", "muon"])
def test_resume_equals_uninterrupted_run(tmp_path, data, budget):
    """Under a token budget too: the lr schedule's horizon (tokens per step) is known again at once on resume; and
    with Muon, whose momentum buffers come back from the checkpoint."""
    straight = tmp_path / "straight"
    train, val = loaders(data)
    fit(make_model(), train, val, cfg(**budget), straight, run_config={}, quiet=True)

    crashed = tmp_path / "crashed"
    train = DyingBatches(data, "train", 4, BLOCK, seed=1)
    train.die_after = 13  # checkpoints at steps 5 and 10; dies during step 14
    with pytest.raises(Interrupt):
        fit(make_model(), train, TokenBatches(data, "val", 4, BLOCK, seed=2), cfg(**budget), crashed, run_config={},
            quiet=True)
    train, val = loaders(data)
    result = fit(make_model(seed=99), train, val, cfg(**budget), crashed, run_config={}, quiet=True)  # resume=auto
    assert result.resumed_from.endswith("step_0000010")
    a, b = train_losses(straight), train_losses(crashed)
    assert sorted(a) == sorted(b) == list(range(1, 21))  # records past the checkpoint were replaced
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-5, step


@pytest.mark.parametrize("fused", [True, False], ids=["skip-on-device", "skip-on-host"])
def test_nonfinite_steps_skipped_then_stop(tmp_path, data, monkeypatch, fused):
    # fused AdamW skips a bad step on the device (found_inf); the foreach one needs the host to decide
    monkeypatch.setattr("owngpt.train.optim._fused_works", lambda device: fused)
    class Poisoned(TokenBatches):
        bad: set[int] = set()

        def next_batch(self):
            x, y = super().next_batch()
            if self.batches in self.bad:
                x = x.clone()
                x[0, 0] = VOCAB + 5  # out-of-range id -> the model below yields NaN
            return x, y

    class NaNOnBadIds(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = make_model(0.0)
            self.cfg = self.inner.cfg

        def forward(self, idx):
            bad = idx >= VOCAB
            logits = self.inner(idx.clamp(max=VOCAB - 1))
            return torch.where(bad.any(), torch.full_like(logits, float("nan")), logits)

    train = Poisoned(data, "train", 4, BLOCK, seed=1)
    train.bad = {3}
    model = NaNOnBadIds()
    result = fit(model, train, None, cfg(max_steps=6, eval_interval=0), tmp_path / "a", run_config={}, quiet=True)
    assert result.steps == 6 and result.nonfinite_steps == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())

    train = Poisoned(data, "train", 4, BLOCK, seed=1)
    train.bad = set(range(1, 100))
    model = NaNOnBadIds()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, train, None, cfg(max_steps=50, max_nonfinite=4, eval_interval=0), tmp_path / "b",
                 run_config={}, quiet=True)
    # the host reads a step's loss while the next one runs, but within a run of bad steps it reads each at once,
    # so the 4th stops the run before a 5th is taken
    assert result.steps == 4 and result.stopped_reason.startswith("diverged")
    assert "(step 4)" in result.stopped_reason and "train.lr" in result.stopped_reason
    assert result.nonfinite_steps == 4
    for k, v in model.state_dict().items():  # no update ever happened
        assert torch.equal(v, before[k]), k

    # bad steps 1-4, then good ones: the stop comes at step 4, and step 5 never touches the weights
    train = Poisoned(data, "train", 4, BLOCK, seed=1)
    train.bad = {1, 2, 3, 4}
    model = NaNOnBadIds()
    result = fit(model, train, None, cfg(max_steps=50, max_nonfinite=4, eval_interval=0), tmp_path / "c",
                 run_config={}, quiet=True)
    assert result.steps == 4 and result.nonfinite_steps == 4 and result.stopped_reason.startswith("diverged")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not [r for r in read_metrics(tmp_path / "c" / "metrics.jsonl") if r["kind"] == "train"]


@pytest.mark.parametrize("fused", [True, False], ids=["skip-on-device", "skip-on-host"])
def test_infinite_gradient_with_finite_loss_is_skipped(tmp_path, data, monkeypatch, fused):
    monkeypatch.setattr("owngpt.train.optim._fused_works", lambda device: fused)

    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, poison):
            ctx.poison = poison
            return x.view_as(x)

        @staticmethod
        def backward(ctx, grad):
            return (grad * float("inf") if ctx.poison else grad), None

    class Flaky(nn.Module):  # step 3's backward sends an infinite gradient; its loss stays finite
        def __init__(self):
            super().__init__()
            self.inner = make_model(0.0)
            self.cfg = self.inner.cfg
            self.calls = 0

        def forward(self, idx):
            self.calls += 1
            return InfGrad.apply(self.inner(idx), self.calls == 3)

    train, _ = loaders(data)
    model = Flaky()
    result = fit(model, train, None, cfg(max_steps=6, eval_interval=0), tmp_path / "run", run_config={}, quiet=True)
    assert result.steps == 6 and result.nonfinite_steps == 1 and result.stopped_reason.startswith("reached")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "nonfinite"] == [3]


def test_early_stopping(tmp_path, data):
    train, val = loaders(data)
    # lr 0: validation loss never improves after the first evaluation
    result = fit(make_model(0.0), train, val, cfg(max_steps=100, lr=0.0, min_lr=0.0, eval_interval=3, patience=2),
                 tmp_path / "run", run_config={}, quiet=True)
    assert result.stopped_reason.startswith("early stopping") and result.steps == 9
    assert len(result.val_history) == 3 and result.best_step == 3
    # run again, it is a finished run: no more steps or validations (not another eval_interval of training)
    train, val = loaders(data)
    again = fit(make_model(0.0), train, val, cfg(max_steps=100, lr=0.0, min_lr=0.0, eval_interval=3, patience=2),
                tmp_path / "run", run_config={}, quiet=True)
    assert again.stopped_reason.startswith("early stopping") and again.steps == 9 and len(again.val_history) == 3
    assert again.last_val_loss == result.last_val_loss  # its last validation, not nan
    # a larger patience continues it
    train, val = loaders(data)
    more = fit(make_model(0.0), train, val, cfg(max_steps=100, lr=0.0, min_lr=0.0, eval_interval=3, patience=3),
               tmp_path / "run", run_config={}, quiet=True)
    assert more.stopped_reason.startswith("early stopping") and more.steps == 12 and len(more.val_history) == 4


def test_time_and_token_budgets(tmp_path, data):
    class Slow(TokenBatches):
        def next_batch(self):
            time.sleep(0.02)
            return super().next_batch()

    t0 = time.perf_counter()
    result = fit(make_model(0.0), Slow(data, "train", 4, BLOCK, seed=1), None,
                 cfg(max_steps=0, max_time="1s", eval_interval=0), tmp_path / "t", run_config={}, quiet=True)
    assert result.stopped_reason == "reached max_time=1s"
    assert 1.0 <= time.perf_counter() - t0 < 6 and result.steps > 5
    train, _ = loaders(data)
    result = fit(make_model(0.0), train, None, cfg(max_steps=0, max_tokens=640, eval_interval=0), tmp_path / "k",
                 run_config={}, quiet=True)
    assert result.tokens == 640 and result.steps == 10
    # Running a finished run again does no work and keeps its figures (no nan loss, no 0 tokens/s in the summary).
    train, _ = loaders(data)
    again = fit(make_model(0.0), train, None, cfg(max_steps=0, max_tokens=640, eval_interval=0), tmp_path / "k",
                run_config={}, quiet=True)
    assert again.steps == 10 and again.resumed_from
    assert again.tokens_per_s > 0 and math.isfinite(again.last_train_loss)
    assert "nan" not in (tmp_path / "k" / "summary.md").read_text()


class Fixed:
    """The given batches in turn, forever."""

    def __init__(self, x, y):
        self.x, self.y, self.i = x, y, 0

    def next_batch(self):
        out = self.x[self.i], self.y[self.i]
        self.i = (self.i + 1) % len(self.x)
        return out


def test_grad_accum_matches_big_batch(tmp_path, data):
    """Two micro-batches of 4 with loss/2 each give the same update as one batch of 8."""
    x = torch.randint(0, VOCAB, (8, BLOCK))
    y = torch.randint(0, VOCAB, (8, BLOCK))
    big = make_model(0.0)
    small = make_model(0.0)
    c = dict(max_steps=1, warmup_steps=0, eval_interval=0)
    fit(big, Fixed([x], [y]), None, cfg(**c, batch_size=8), tmp_path / "a", run_config={}, quiet=True)
    fit(small, Fixed([x[:4], x[4:]], [y[:4], y[4:]]), None, cfg(**c, grad_accum=2), tmp_path / "b", run_config={},
        quiet=True)
    for (n, a), b in zip(big.named_parameters(), small.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)


def test_grad_accum_weights_every_target_token_equally(tmp_path):
    """With masked targets (chat fine-tuning) a step's loss is the mean over all its target tokens: a micro-batch
    with 1 target and one with 16 give the update of one batch holding both, not the mean of the two means."""
    x = torch.randint(0, VOCAB, (2, BLOCK))
    y = torch.randint(0, VOCAB, (2, BLOCK))
    y[0, :-1] = -1  # first row: one target token; second row: all 16
    big, small = make_model(0.0), make_model(0.0)
    c = dict(max_steps=1, warmup_steps=0, eval_interval=0, grad_clip=0.0)
    fit(big, Fixed([x], [y]), None, cfg(**c, batch_size=2), tmp_path / "a", run_config={}, quiet=True)
    fit(small, Fixed([x[:1], x[1:]], [y[:1], y[1:]]), None, cfg(**c, batch_size=1, grad_accum=2), tmp_path / "b",
        run_config={}, quiet=True)
    for (n, a), b in zip(big.named_parameters(), small.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)
    assert train_losses(tmp_path / "a")[1] == pytest.approx(train_losses(tmp_path / "b")[1], rel=1e-5)


class _Tok:
    """Just enough of a tokenizer for fit(): a hash, and save() for the checkpoint's copy."""

    def __init__(self, hash_: str) -> None:
        self.hash = hash_

    def save(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "tokenizer.json").write_text(self.hash)


def test_resume_refuses_what_would_mix_two_runs(tmp_path, data):
    """A run folder is continued only by the same model and tokenizer; starting afresh in it is refused."""
    from owngpt.errors import OwnGPTError

    run = tmp_path / "run"
    train, val = loaders(data)
    fit(make_model(0.0), train, val, cfg(max_steps=10), run, run_config={}, tokenizer=_Tok("aaa"), quiet=True)
    with pytest.raises(OwnGPTError, match="tokenizer aaa.*tokenizer bbb"):
        fit(make_model(0.0), *loaders(data), cfg(max_steps=20), run, run_config={}, tokenizer=_Tok("bbb"), quiet=True)
    wider = GPT(ModelConfig(preset="gpt2", vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(OwnGPTError, match=r"does not fit this model \(shapes differ: .*c_attn.weight \(48, 16\) there, \(96, 32\) here"):
        fit(wider, *loaders(data), cfg(max_steps=20), run, run_config={}, tokenizer=_Tok("aaa"), quiet=True)
    # other optimizer groups (a faster embedding; a head untied from a tied run's table): one line, not torch's error
    untied = GPT(ModelConfig(preset="gpt2", vocab_size=VOCAB, block_size=BLOCK, n_layer=1, n_head=2, n_embd=16,
                             tie_embeddings=False))
    for model, settings in ((make_model(0.0), dict(embed_lr_scale=30.0)), (untied, {})):
        with pytest.raises(OwnGPTError, match=r"optimizer state does not fit .*train.embed_lr_scale, "
                                              r"model.tie_embeddings"):
            fit(model, *loaders(data), cfg(max_steps=20, **settings), run, run_config={}, tokenizer=_Tok("aaa"),
                quiet=True)
    for resume in ("none", str(tmp_path / "elsewhere")):
        if resume != "none":
            fit(make_model(0.0), *loaders(data), cfg(max_steps=5), tmp_path / "elsewhere", run_config={}, quiet=True)
        with pytest.raises(OwnGPTError, match="already holds a run .*step_0000010.*--resume auto"):
            fit(make_model(0.0), *loaders(data), cfg(max_steps=20, resume=resume), run, run_config={}, quiet=True)
    # nothing was changed by the refused attempts: the run continues where it stopped (naming its own folder is
    # the same as auto)
    result = fit(make_model(0.0), *loaders(data), cfg(max_steps=15, resume=str(run)), run, run_config={},
                 tokenizer=_Tok("aaa"), quiet=True)
    assert result.resumed_from.endswith("step_0000010") and result.steps == 15


_CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_train_loop import make_model, loaders, cfg
from pathlib import Path
from owngpt.train.loop import fit
torch.set_num_threads(1)
train, val = loaders(Path({data!r}))
fit(make_model(), train, val, cfg(max_steps=40, save_interval=3, eval_interval=10), Path({run!r}),
    run_config={{}}, quiet=True)
"""


def _child(data: Path, run: Path) -> list[str]:
    code = textwrap.dedent(_CHILD.format(tests=str(Path(__file__).parent), data=str(data), run=str(run)))
    return [sys.executable, "-c", code]


def test_sigkill_mid_run_then_resume(tmp_path, data):
    """A real process killed with SIGKILL at an arbitrary moment, resumed: same losses as a straight run."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_child(data, straight), check=True, timeout=300)
    proc = subprocess.Popen(_child(data, killed))
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a few checkpoints exist, at whatever it is doing then
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 17:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    subprocess.run(_child(data, killed), check=True, timeout=300)
    a, b = train_losses(straight), train_losses(killed)
    assert sorted(a) == sorted(b) == list(range(1, 41))
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-5, step


def write_prepared(data: Path):
    """A folder as `owngpt prepare` writes it: tiny shards made with the real char tokenizer (returned)."""
    from owngpt.tokenizer import train_char

    texts = [f"hello world number {i}, the quick brown fox." for i in range(200)]
    tok = train_char(texts)
    tok.save(data / "tokenizer")
    (data / "tokens").mkdir(parents=True)
    manifest = {"format": 1, "dtype": "uint16", "tokenizer_hash": tok.hash, "vocab_size": tok.vocab_size, "splits": {}}
    for split, docs in (("train", texts[:180]), ("val", texts[180:])):
        ids = np.array([t for d in docs for t in tok.encode(d) + [tok.eot_id]], dtype=np.uint16)
        ids.tofile(data / f"tokens/{split}_0000.bin")
        manifest["splits"][split] = {"documents": len(docs), "tokens": len(ids),
                                     "shards": [{"file": f"tokens/{split}_0000.bin", "tokens": len(ids), "sha256": ""}]}
    (data / "manifest.json").write_text(json.dumps(manifest))
    return tok


def cli(args: list[str]) -> int:
    from owngpt.cli import main

    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


TINY = ["--set", "train.batch_size=4", "--set", "train.eval_interval=3", "--set", "train.eval_batches=2",
        "--set", "model.block_size=32", "--set", "model.n_layer=1", "--set", "train.tensorboard=false"]


def test_cli_pretrain_end_to_end(tmp_path):
    """`owngpt pretrain` on tiny shards made with the real char tokenizer; then load_model() reads the run."""
    from owngpt.checkpoint.format import load_model

    data = tmp_path / "data"
    tok = write_prepared(data)
    run = tmp_path / "run"
    assert cli(["pretrain", "--data", str(data), "--out", str(run), "--steps", "6", "--quiet", *TINY]) == 0
    assert (run / "summary.md").exists() and (run / "best" / "tokenizer").is_dir()
    model, meta, tok2 = load_model(run)
    assert meta.tokenizer_hash == tok.hash and tok2.hash == tok.hash
    assert meta.model_config["vocab_size"] % 64 == 0 and meta.model_config["vocab_size"] >= tok.vocab_size
    assert cli(["pretrain", "--data", str(data), "--out", str(run), "--set", "train.lrr=1"]) == 1
    # an adapter-only checkpoint (a LoRA run) cannot start a pretraining run: one line, not a traceback
    import shutil

    adapter = tmp_path / "adapter-only"
    shutil.copytree(run / "best", adapter)
    meta_path = adapter / "meta.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "weights_filtered": True}))
    assert cli(["pretrain", "--data", str(data), "--out", str(tmp_path / "again"), "--init-from", str(adapter),
                "--steps", "2", "--quiet"]) == 1


def test_cli_pretrain_says_where_it_resumes_from(tmp_path, capsys):
    """A resumed pretrain names the checkpoint it continues from, its step and tokens, before training (with
    --quiet too, like the model and data lines); a fresh run says nothing of the kind."""
    data, run = tmp_path / "data", tmp_path / "run"
    write_prepared(data)
    assert cli(["pretrain", "--data", str(data), "--out", str(run), "--steps", "4", "--quiet", *TINY]) == 0
    assert "resuming" not in capsys.readouterr().out
    assert cli(["pretrain", "--data", str(data), "--out", str(run), "--steps", "6", "--quiet", *TINY]) == 0
    out = capsys.readouterr().out
    line = f"resuming from {run / 'checkpoints' / 'step_0000004'} (step 4, {4 * 4 * 32:,} tokens seen)"
    assert line in out.splitlines()
    assert out.index(line) < out.index("stopped: reached max_steps=6")


def test_cli_pretrain_on_cuda_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    data = tmp_path / "data"
    write_prepared(data)
    assert cli(["pretrain", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2", "--quiet", *TINY,
                "--set", "train.device=cuda"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' needs a CUDA build of PyTorch") and err.count("\n") == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_out_naming_a_file_is_one_line_before_any_work(tmp_path, capsys):
    """`--out` naming an existing file (or a path through one) used to end pretrain and sft in a FileExistsError
    traceback after loading the data and the model."""
    data, run, taken = tmp_path / "data", tmp_path / "run", tmp_path / "taken"
    write_prepared(data)
    taken.write_text("x")
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"hi {i}"},
                                                      {"role": "assistant", "content": "hello world"}]}) + "\n"
                             for i in range(20)))
    for out in (taken, taken / "sub"):
        assert cli(["pretrain", "--data", str(data), "--out", str(out), "--steps", "2", "--quiet", *TINY]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot write into {out}: ") and "is a file, not a folder" in err, err
        assert err.count("\n") == 1
    assert cli(["pretrain", "--data", str(data), "--out", str(run), "--steps", "2", "--quiet", *TINY]) == 0
    capsys.readouterr()
    assert cli(["sft", "--base", str(run), "--data", str(chats), "--out", str(taken), "--steps", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: cannot write into {taken}: it is a file, not a folder; name a new or existing folder " \
        "(--out) instead\n"
    assert taken.read_text() == "x"


def test_resume_applies_changed_optimizer_settings(tmp_path, data):
    """Moments continue across a resume, but weight decay, betas and eps are the resumed run's own settings."""
    from owngpt.checkpoint.format import latest_checkpoint, load_checkpoint

    run = tmp_path / "run"
    fit(make_model(0.0), *loaders(data), cfg(max_steps=5), run, run_config={}, quiet=True)
    fit(make_model(0.0), *loaders(data), cfg(max_steps=10, weight_decay=0.0, beta2=0.95, eps=1e-6), run,
        run_config={}, quiet=True)
    groups = load_checkpoint(latest_checkpoint(run))[2]["optimizer"]["param_groups"]
    assert [(g["weight_decay"], tuple(g["betas"]), g["eps"]) for g in groups] == [(0.0, (0.9, 0.95), 1e-6)] * 2
