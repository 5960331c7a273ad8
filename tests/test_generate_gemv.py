"""One-row decoding through numpy's BLAS (owngpt/generate/gemv.py): the same products, the same greedy text, torch's
thread count restored, the choice from OWNGPT_GEMV or the probe."""

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


@pytest.fixture
def backend():
    """Set the backend for one test; the process's choice comes back afterwards."""
    before = gemv._chosen
    yield gemv.set_gemv_backend
    gemv._chosen = before


def test_one_row_linear_goes_to_numpy_and_equals_torch(backend, monkeypatch):
    backend("openblas")
    calls = []
    real_dot = np.dot
    monkeypatch.setattr(gemv.np, "dot", lambda a, b: calls.append(a.shape) or real_dot(a, b))
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(24, 16, generator=g), torch.randn(24, generator=g)
    x = torch.randn(1, 1, 16, generator=g)
    with torch.no_grad():
        expected = F.linear(x, w, b)
        with gemv.one_row_products(1, torch.device("cpu")):
            got = F.linear(x, w, b)
            batch = F.linear(torch.randn(3, 16, generator=g), w)  # several rows: torch's product
            bf16 = F.linear(x.bfloat16(), w.bfloat16())  # not fp32: torch's
    assert calls == [(24, 16)]
    assert got.shape == (1, 1, 24) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert batch.shape == (3, 24) and bf16.dtype == torch.bfloat16
    with gemv.one_row_products(1, torch.device("cpu")):  # autograd on: torch's, so gradients still flow
        y = F.linear(x, w.requires_grad_())
    assert y.requires_grad and calls == [(24, 16)]


def test_torch_threads_are_one_inside_and_restored_after(backend):
    backend("openblas")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with gemv.one_row_products(1, torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), gemv.one_row_products(1, torch.device("cpu")):
            raise RuntimeError("a failing step")
        assert torch.get_num_threads() == 2
        with gemv.one_row_products(2, torch.device("cpu")):  # two rows: nothing changes
            assert torch.get_num_threads() == 2
        backend("torch")
        with gemv.one_row_products(1, torch.device("cpu")):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("preset", ["gpt2", "modern"])
def test_greedy_text_and_sampled_text_equal_torchs(tok, backend, preset):
    m = random_gpt(tok.vocab_size, preset, seed=3)
    prompts = [tok.encode("the quick brown")]
    sample = GenerationConfig(max_new_tokens=30, temperature=0.9, top_k=20, seed=7)
    results = {}
    for name in ("torch", "openblas"):
        backend(name)
        results[name] = (generate_ids(m, prompts, greedy(30)), generate_ids(m, prompts, sample))
    assert results["openblas"] == results["torch"]
    assert len(set(results["torch"][0][0])) > 3


def test_lora_model_decodes_the_same(tok, backend):
    m = random_gpt(tok.vocab_size, "modern", seed=4)
    apply_lora(m, LoRAConfig(rank=4, alpha=8, dropout=0.0, targets=["c_attn", "c_proj"]))
    m.eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a trained-looking update, not LoRA's zero start
    prompts = [tok.encode("hello world")]
    backend("torch")
    expected = generate_ids(m, prompts, greedy(25))
    backend("openblas")
    assert generate_ids(m, prompts, greedy(25)) == expected


def test_choice_from_the_environment_or_the_probe(backend, monkeypatch):
    backend("auto")
    monkeypatch.setenv("OWNGPT_GEMV", "torch")
    assert gemv.gemv_backend() == "torch"
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


def test_probe_answers_one_of_the_two():
    assert gemv.probe(shape=(256, 256), repeats=1) in ("torch", "openblas")
