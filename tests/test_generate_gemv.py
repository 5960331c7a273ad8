"""One-row decoding through numpy's BLAS (owngpt/generate/gemv.py): the same products, the same greedy text, torch's
thread count restored, numpy's BLAS held to torch's threads, the choice from OWNGPT_GEMV or the probe, and only for
models too large for the caches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gen_fixtures import greedy, random_gpt, tok  # noqa: F401 - fixtures
from owngpt.errors import OwnGPTError
from owngpt.generate import GenerationConfig, generate_ids
from owngpt.generate import gemv
from owngpt.model.lora import LoRAConfig, apply_lora

CPU = torch.device("cpu")


@pytest.fixture
def backend(monkeypatch):
    """Set the backend for one test (the process's choice comes back afterwards), with every model large enough."""
    before = gemv._chosen
    monkeypatch.setattr(gemv, "MIN_WEIGHT_BYTES", 0)
    yield gemv.set_gemv_backend
    gemv._chosen = before


@pytest.fixture
def dots(monkeypatch):
    """The shapes numpy.dot was called with, in order."""
    calls = []
    real_dot = np.dot
    monkeypatch.setattr(gemv.np, "dot", lambda a, b: calls.append(a.shape) or real_dot(a, b))
    return calls


def test_one_row_linear_goes_to_numpy_and_equals_torch(dots):
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(24, 16, generator=g), torch.randn(24, generator=g)
    x = torch.randn(1, 1, 16, generator=g)
    with torch.no_grad():
        expected = F.linear(x, w, b)
        with gemv.one_row_products(True):
            got = F.linear(x, w, b)
            batch = F.linear(torch.randn(3, 16, generator=g), w)  # several rows: torch's product
            bf16 = F.linear(x.bfloat16(), w.bfloat16())  # not fp32: torch's
            strided = F.linear(x, torch.randn(16, 24, generator=g).t())  # not contiguous: torch's
        with gemv.one_row_products(False):
            F.linear(x, w, b)
    assert dots == [(24, 16)]
    assert got.shape == (1, 1, 24) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert batch.shape == (3, 24) and bf16.dtype == torch.bfloat16 and strided.shape == (1, 1, 24)
    with gemv.one_row_products(True):  # autograd on: torch's, so gradients still flow
        y = F.linear(x, w.requires_grad_())
    assert y.requires_grad and dots == [(24, 16)]
    with torch.no_grad(), gemv.one_row_products(True), pytest.raises(RuntimeError):
        F.linear(torch.randn(16, 1), torch.randn(24, 16))  # a wrong shape stays torch's error, not a reshape's


def test_torch_threads_are_one_inside_and_restored_after():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with gemv.one_row_products(True):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), gemv.one_row_products(True):
            raise RuntimeError("a failing step")
        assert torch.get_num_threads() == 2
        with gemv.one_row_products(False):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("preset", ["gpt2", "modern"])
def test_greedy_and_sampled_text_equal_torchs(tok, backend, dots, preset):
    m = random_gpt(tok.vocab_size, preset, seed=3)
    prompts = [tok.encode("the quick brown")]
    sample = GenerationConfig(max_new_tokens=30, temperature=0.9, top_k=20, seed=7)
    results = {}
    for name in ("torch", "openblas"):
        backend(name)
        results[name] = (generate_ids(m, prompts, greedy(30)), generate_ids(m, prompts, sample))
        assert bool(dots) == (name == "openblas")  # the numpy path really ran, and only when chosen
    assert results["openblas"] == results["torch"]
    assert len(set(results["torch"][0][0])) > 3


def test_lora_model_decodes_the_same(tok, backend, dots):
    m = random_gpt(tok.vocab_size, "modern", seed=4)
    apply_lora(m, LoRAConfig(rank=4, alpha=8, targets=["c_attn", "c_proj"]))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a trained-looking update, not LoRA's zero start
    prompts = [tok.encode("hello world")]
    backend("torch")
    expected = generate_ids(m, prompts, greedy(25))
    backend("openblas")
    assert generate_ids(m, prompts, greedy(25)) == expected and dots


def test_only_models_past_the_caches_on_a_cpu_use_numpy(tok, monkeypatch):
    before = gemv._chosen
    try:
        gemv.set_gemv_backend("openblas")
        m = random_gpt(tok.vocab_size, "gpt2")
        fp32 = sum(p.numel() * 4 for p in m.parameters() if p.dim() == 2)
        monkeypatch.setattr(gemv, "MIN_WEIGHT_BYTES", fp32)
        assert gemv.uses_numpy(m, CPU)
        assert not gemv.uses_numpy(m, torch.device("meta"))  # not a CPU
        monkeypatch.setattr(gemv, "MIN_WEIGHT_BYTES", fp32 + 1)
        assert not gemv.uses_numpy(m, CPU)  # the small models owngpt trains on a laptop: torch's product
        monkeypatch.setattr(gemv, "MIN_WEIGHT_BYTES", 0)
        assert not gemv.uses_numpy(m.to(torch.bfloat16), CPU)  # no fp32 matrices
        gemv.set_gemv_backend("torch")
        assert not gemv.uses_numpy(m.float(), CPU)
    finally:
        gemv._chosen = before


def test_choice_from_the_environment_or_the_probe_with_blas_threads_held(backend, monkeypatch):
    from threadpoolctl import threadpool_info

    backend("auto")
    monkeypatch.setenv("OWNGPT_GEMV", "torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert gemv.gemv_backend() == "torch"
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(n == 1 for n in blas)  # numpy's BLAS held to torch's one thread
    finally:
        torch.set_num_threads(threads)
        gemv.limit_blas_threads(threads)
    backend("auto")
    monkeypatch.setenv("OWNGPT_GEMV", "fast")
    with pytest.raises(OwnGPTError, match="OWNGPT_GEMV='fast'"):
        gemv.gemv_backend()
    backend("auto")
    monkeypatch.setenv("OWNGPT_GEMV", "auto")
    monkeypatch.setattr(gemv, "probe", lambda: "openblas")
    assert gemv.gemv_backend() == "openblas"
    monkeypatch.setattr(gemv, "probe", lambda: "torch")
    assert gemv.gemv_backend() == "openblas"  # measured once per process
    with pytest.raises(OwnGPTError):
        gemv.set_gemv_backend("mkl")


def test_serve_refuses_a_bad_setting_at_start(monkeypatch, tmp_path, capsys):
    pytest.importorskip("fastapi")
    from owngpt.cli import main

    monkeypatch.setenv("OWNGPT_GEMV", "mkl")
    with pytest.raises(SystemExit) as stop:  # before the run is looked at: the setting, in one line
        main(["serve", str(tmp_path / "no-run")])
    assert stop.value.code == 1
    assert "OWNGPT_GEMV='mkl'" in capsys.readouterr().err


def test_probe_answers_one_of_the_two():
    assert gemv.probe(shape=(256, 256), repeats=1) in ("torch", "openblas")
