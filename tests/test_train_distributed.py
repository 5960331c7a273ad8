"""Training under torchrun on CPU (gloo, 2 processes): the same parameters as one process for the same global
batch, FSDP2 == DDP, resume across world sizes, disjoint data shares, a killed rank, and the CLI verbs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from owngpt.config import TrainConfig
from owngpt.data.loader import PackedBatches, TokenBatches
from owngpt.errors import OwnGPTError
from owngpt.train.distributed import RankBatches, choose_mode, local_accum
from test_train_loop import BLOCK, TINY, train_losses, write_corpus, write_prepared

WORKER = Path(__file__).parent / "dist_worker.py"
ROOT = Path(__file__).parent.parent


def torchrun(nproc: int, args: list[str], *, max_restarts: int = 0) -> list[str]:
    # --standalone: a rendezvous on a free local port, so tests never collide with another job on 29500
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            f"--max-restarts={max_restarts}", *args]


def run_worker(data: Path, run: Path, nproc: int = 1, **settings) -> subprocess.CompletedProcess:
    args = [str(WORKER), str(data), str(run), json.dumps(settings)]
    cmd = torchrun(nproc, args) if nproc > 1 else [sys.executable, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("dist") / "data")


def checkpoint_weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def assert_close_losses(a: dict[int, float], b: dict[int, float], tol: float = 1e-5) -> None:
    assert sorted(a) == sorted(b)
    for step in a:
        assert abs(a[step] - b[step]) <= tol, (step, a[step], b[step])


# ----------------------------------------------------------------------------- in one process


def test_local_accum_shares_the_global_batch_or_says_what_would():
    assert local_accum(4, 2, batch_size=8) == 2
    assert local_accum(4, 4, batch_size=8) == 1
    with pytest.raises(OwnGPTError) as e:
        local_accum(3, 2, batch_size=8, block_size=256)
    message = str(e.value)
    assert "train.grad_accum=3" in message and "2 processes" in message
    assert "--set train.grad_accum=2 (16 sequences × 256 tokens per step)" in message
    assert "--set train.grad_accum=4 (32 sequences" in message and "run 1 or 3 processes" in message
    with pytest.raises(OwnGPTError, match="train.grad_accum=4 "):  # 1 < world: only the multiple above is offered
        local_accum(1, 4, batch_size=2)


def test_rank_shares_of_packed_conversations_are_disjoint_and_cover_an_epoch():
    examples = [([i, i + 1, i + 2, 1], [0, 1, 1, 1]) for i in range(40)]
    def stream(world: int, rank: int, batches: int) -> list[list[int]]:
        inner = PackedBatches(examples, block_size=3, batch_size=2, pad_id=0, seed=5)
        share = RankBatches(inner, rank, world) if world > 1 else inner
        rows = [share.next_batch()[0][:, 0].tolist() for _ in range(batches)]
        return rows, inner.state_dict()
    alone, alone_state = stream(1, 0, 20)  # one shuffled epoch: 40 rows in 20 batches of 2
    for world in (2, 4):
        shares = [stream(world, r, 20 // world) for r in range(world)]
        rows = [sorted(x for batch in rows for x in batch) for rows, _ in shares]
        flat = [x for r in rows for x in r]
        assert len(flat) == len(set(flat)) == 40  # disjoint, and together the whole epoch
        assert sorted(flat) == sorted(x for b in alone for x in b)
        # interleaved, the shares are the one-process stream, and every rank ends where that stream ends
        merged = [shares[k % world][0][k // world] for k in range(20)]
        assert merged == alone
        assert all(state == alone_state for _, state in shares)


def test_rank_shares_of_token_windows_interleave_to_the_one_process_stream(corpus):
    alone = TokenBatches(corpus, "train", 4, BLOCK, seed=3)
    expected = [alone.next_batch()[0] for _ in range(6)]
    shares = [RankBatches(TokenBatches(corpus, "train", 4, BLOCK, seed=3), r, 3) for r in range(3)]
    got = [shares[k % 3].next_batch()[0] for k in range(6)]
    for a, b in zip(expected, got):
        assert torch.equal(a, b)
    assert all(s.state_dict()["batches"] == alone.state_dict()["batches"] for s in shares)
    assert all(torch.equal(s.state_dict()["rng"], alone.state_dict()["rng"]) for s in shares)


def test_choose_mode_and_its_refusals():
    model = torch.nn.Linear(2, 2)
    cpu = torch.device("cpu")
    assert choose_mode(TrainConfig(), model, cpu, 1) == "none"
    assert choose_mode(TrainConfig(), model, cpu, 2) == "ddp"
    assert choose_mode(TrainConfig(parallel="fsdp"), model, cpu, 2) == "fsdp"
    with pytest.raises(OwnGPTError, match="torchrun started 2 processes"):
        choose_mode(TrainConfig(parallel="none"), model, cpu, 2)
    with pytest.raises(OwnGPTError, match="use train.parallel=ddp with Muon"):
        choose_mode(TrainConfig(parallel="fsdp", optimizer="muon"), model, cpu, 2)
    with pytest.raises(OwnGPTError, match="dist_timeout"):
        TrainConfig(dist_timeout="soon")
    with pytest.raises(OwnGPTError, match="train.dist_timeout must be a positive duration"):
        TrainConfig(dist_timeout="0")


def test_a_backend_the_device_lacks_is_refused_before_any_process_group(monkeypatch):
    from owngpt.runtime import init_process_group

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(OwnGPTError, match="nccl needs CUDA GPUs"):
        init_process_group(torch.device("cpu"), "nccl")
    with pytest.raises(OwnGPTError, match="use train.dist_backend=nccl"):
        init_process_group(torch.device("cuda"), "gloo")
    with pytest.raises(OwnGPTError, match="not on mps"):
        init_process_group(torch.device("mps"), "auto")


def test_work_only_rank_0_does_raises_its_own_error_on_rank_0():
    from owngpt.train.distributed import Parallel

    par = Parallel()
    assert par.main_only(lambda: 7) == 7
    with pytest.raises(PermissionError, match="read-only"):
        par.main_only(lambda: (_ for _ in ()).throw(PermissionError("read-only run folder")))


def test_close_frees_ddps_reducer_while_the_group_is_still_registered(tmp_path, monkeypatch):
    """DDP's C++ reducer, left to the garbage collector, can be the gloo group's last holder and frees it holding
    the GIL, which hangs when a gloo worker thread needs the GIL to finish a collective (a one-in-twenty hang after
    fit() returned, in CI). close() frees it first, so the group goes through its own GIL-releasing handles."""
    import torch.distributed as dist

    from owngpt.runtime import ProcessGroup
    from owngpt.train.distributed import Distributed

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        par = Distributed(ProcessGroup(rank=0, world_size=1, control=None, created_here=True), "ddp")
        net = par.wrap(torch.nn.Linear(3, 3), torch.float32)
        net(torch.randn(2, 3)).sum().backward()
        assert "reducer" in net.__dict__ and net.logger is not None
        held_at_destroy = []
        destroy = dist.destroy_process_group
        def recorded_destroy(*args, **kwargs):
            held_at_destroy.append("reducer" in net.__dict__ or net.logger is not None)
            destroy(*args, **kwargs)

        monkeypatch.setattr(dist, "destroy_process_group", recorded_destroy)
        par.close()
        assert held_at_destroy == [False]  # freed before the group was destroyed, not after
        assert "reducer" not in net.__dict__ and net.logger is None and not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- under torchrun


def test_ddp_matches_one_process_and_fsdp_matches_ddp(tmp_path, corpus):
    """8 steps of grad_accum=2: alone, and over 2 processes (one micro-batch each) with DDP and with FSDP2."""
    one, ddp, fsdp = tmp_path / "one", tmp_path / "ddp", tmp_path / "fsdp"
    run_worker(corpus, one, max_steps=8)
    run_worker(corpus, ddp, 2, max_steps=8, parallel="ddp")
    run_worker(corpus, fsdp, 2, max_steps=8, parallel="fsdp")
    alone = load_file(str(one / "rank0.safetensors"))
    ranks = [load_file(str(ddp / f"rank{r}.safetensors")) for r in (0, 1)]
    for name, value in alone.items():
        torch.testing.assert_close(ranks[0][name], value, atol=1e-5, rtol=0)
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # every rank holds the same parameters
    assert_close_losses(train_losses(one), train_losses(ddp))
    assert_close_losses(train_losses(ddp), train_losses(fsdp))
    # FSDP's checkpoint holds the full weights, gathered: the same as DDP's
    for name, value in checkpoint_weights(ddp, 8).items():
        torch.testing.assert_close(checkpoint_weights(fsdp, 8)[name], value, atol=1e-5, rtol=0)
    vals = [[r["loss"] for r in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "val"] for run in (one, ddp)]
    assert vals[0] == pytest.approx(vals[1], abs=1e-5)  # validation shared by the ranks, summed back
    assert json.loads((ddp / "result.json").read_text())["tokens"] == 8 * 2 * 4 * BLOCK  # global tokens


@pytest.mark.parametrize("first,then", [((2, "ddp"), (1, "")), ((1, ""), (2, "ddp")), ((2, "fsdp"), (2, "ddp")),
                                        ((1, ""), (2, "fsdp"))],
                         ids=["2-to-1", "1-to-2", "fsdp-to-ddp", "1-to-fsdp"])
def test_resume_at_another_world_size_continues_the_same_trajectory(tmp_path, corpus, first, then):
    """Stopped at step 6 by its budget, resumed at another world size to step 12 (a constant lr after warm-up, so
    that the shorter budget does not change the schedule): the losses and weights of a straight 12-step run."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_worker(corpus, straight, max_steps=12, decay="constant")
    run_worker(corpus, resumed, first[0], max_steps=6, decay="constant", **({"parallel": first[1]} if first[1] else {}))
    run_worker(corpus, resumed, then[0], max_steps=12, decay="constant", **({"parallel": then[1]} if then[1] else {}))
    assert_close_losses(train_losses(straight), train_losses(resumed))
    for name, value in checkpoint_weights(straight, 12).items():
        torch.testing.assert_close(checkpoint_weights(resumed, 12)[name], value, atol=1e-5, rtol=0)


def test_two_nodes_through_a_c10d_rendezvous_match_one_process(tmp_path, corpus):
    """The multi-node launch (--nnodes=2, one process a node, c10d rendezvous), both "nodes" on this machine."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one, nodes = tmp_path / "one", tmp_path / "nodes"
    run_worker(corpus, one, max_steps=6)
    args = [str(WORKER), str(corpus), str(nodes), json.dumps({"max_steps": 6})]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d",
              f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=owngpt-test"]
    procs = [subprocess.Popen([*launch, f"--node-rank={n}", *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for n in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert_close_losses(train_losses(one), train_losses(nodes))
    ranks = [load_file(str(nodes / f"rank{r}.safetensors")) for r in (0, 1)]
    for name, value in load_file(str(one / "rank0.safetensors")).items():
        torch.testing.assert_close(ranks[1][name], value, atol=1e-5, rtol=0)


def _workers_of(pid: int) -> list[int]:
    """The processes torchrun (pid) started: its children, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def _start_and_kill_a_rank(corpus: Path, run: Path, max_restarts: int, steps: int) -> tuple[subprocess.Popen, float]:
    settings = json.dumps({"max_steps": steps, "parallel": "ddp", "save_interval": 50, "eval_interval": 100,
                           "log_interval": 10, "dist_timeout": "60s"})
    proc = subprocess.Popen(torchrun(2, [str(WORKER), str(corpus), str(run), settings], max_restarts=max_restarts),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints" / "step_0000100").exists():
        time.sleep(0.05)
    workers = _workers_of(proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    return proc, time.time()


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    """torchrun's output once it exits; a torchrun (and its workers) still running after `timeout` is killed and the
    test fails, rather than leaving them behind."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        for pid in _workers_of(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        out = proc.communicate()[0]
        pytest.fail(f"torchrun still running after {timeout} s:\n{out[-3000:]}")


def test_a_killed_rank_stops_the_others_and_resume_auto_continues(tmp_path, corpus):
    run = tmp_path / "run"
    proc, killed_at = _start_and_kill_a_rank(corpus, run, max_restarts=0, steps=100_000)
    out = _finish(proc, 120)
    assert proc.returncode != 0
    assert time.time() - killed_at < 60, "the surviving rank must not hang"
    assert "FAILED" in out and "SIGKILL" in out
    assert _workers_of(proc.pid) == []
    saved = max(int(p.name.split("_")[1]) for p in (run / "checkpoints").iterdir() if p.name.startswith("step_"))
    run_worker(corpus, run, 2, max_steps=saved + 20, parallel="ddp", save_interval=50, eval_interval=100,
               log_interval=10)
    steps = sorted(train_losses(run))
    assert steps[-1] == saved + 20


def test_torchrun_max_restarts_with_resume_auto_finishes_the_run(tmp_path, corpus):
    """The restarted processes join a fresh rendezvous (not the dead ones' addresses) and resume."""
    run = tmp_path / "run"
    proc, _ = _start_and_kill_a_rank(corpus, run, max_restarts=1, steps=600)
    out = _finish(proc, 240)
    assert proc.returncode == 0, out[-3000:]
    assert json.loads((run / "result.json").read_text())["steps"] == 600
    assert "resuming from" in out  # the restarted ranks continued from the last checkpoint, not from step 0
    steps = sorted(train_losses(run))
    assert steps[-1] == 600


def test_cli_pretrain_and_sft_under_torchrun(tmp_path):
    """The verbs unchanged under torchrun: only rank 0 prints, the summary names the parallel mode; full and LoRA
    fine-tuning; a grad_accum that cannot be shared is one clear line; `chat`'s loader reads the run with no
    process group."""
    from owngpt.checkpoint.format import load_model

    data, base = tmp_path / "data", tmp_path / "base"
    write_prepared(data)
    owngpt = ["-m", "owngpt"]
    done = subprocess.run(torchrun(2, [*owngpt, "pretrain", "--data", str(data), "--out", str(base), "--steps", "6",
                                       "--set", "train.grad_accum=2", *TINY]),
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model: ") == 1 and done.stdout.count("stopped: reached max_steps=6") == 1
    assert "ddp over 2 processes" in (base / "summary.md").read_text()
    model, meta, tok = load_model(base)
    assert meta.step == 6

    bad = subprocess.run(torchrun(2, [*owngpt, "pretrain", "--data", str(data), "--out", str(tmp_path / "bad"),
                                      "--steps", "2", "--set", "train.grad_accum=3", *TINY]),
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0
    assert "train.grad_accum=3 micro-batches per step cannot be shared by 2 processes" in bad.stderr

    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"hi {i}"},
                                                      {"role": "assistant", "content": f"hello number {i}"}]}) + "\n"
                             for i in range(60)))
    sft_args = ["sft", "--base", str(base), "--data", str(chats), "--steps", "4", "--set", "train.batch_size=2",
                "--set", "train.grad_accum=2", "--set", "train.eval_interval=2", "--set", "train.tensorboard=false"]
    runs = {}
    for name, extra in (("full", []), ("lora", ["--lora", "--lora-dropout", "0"])):
        for nproc in (1, 2):
            out = tmp_path / f"sft-{name}-{nproc}"
            cmd = [*owngpt, *sft_args, "--out", str(out), *extra]
            done = subprocess.run(torchrun(2, cmd) if nproc == 2 else [sys.executable, *cmd],
                                  capture_output=True, text=True, timeout=300, cwd=ROOT)
            assert done.returncode == 0, done.stderr[-3000:]
            runs[name, nproc] = out
        assert_close_losses(train_losses(runs[name, 1]), train_losses(runs[name, 2]), tol=1e-4)
    assert (runs["lora", 2] / "adapter").is_dir()
