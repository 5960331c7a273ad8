"""owngpt.load: generate and stream from a run folder, with a LoRA adapter."""

from __future__ import annotations


import pytest
import torch

import owngpt
from gen_fixtures import greedy, model, save_run, tok  # noqa: F401 - fixtures
from owngpt.errors import OwnGPTError
from owngpt.generate import (
    generate,
)


def test_owngpt_load_generate_and_stream(tok, model, tmp_path):
    run = save_run(tmp_path, tok, model)
    g = owngpt.load(run, device="cpu")
    assert g.tokenizer.hash == tok.hash and g.meta.step == 1
    cfg = greedy(20)
    assert g.generate("the quick", max_new_tokens=20, temperature=0) == generate(model, tok, ["the quick"], cfg)[0]
    both = g.generate(["the quick", "hello"], max_new_tokens=20, temperature=0)
    assert both == generate(model, tok, ["the quick", "hello"], cfg)
    assert "".join(g.stream("hello", max_new_tokens=20, temperature=0)) == both[1]
    assert isinstance(g.generate("", max_new_tokens=5, seed=0), str)  # empty prompt: starts at <|endoftext|>
    with pytest.raises(OwnGPTError, match="did you mean 'temperature'"):
        g.generate("hi", temprature=0)
    with pytest.raises(OwnGPTError, match="does not exist"):
        owngpt.load(tmp_path / "missing")


def test_generate_with_num_return_gives_a_list_and_stream_refuses_it(tok, model, tmp_path):
    g = owngpt.load(save_run(tmp_path, tok, model), device="cpu")
    beams = g.generate("the quick", max_new_tokens=12, num_beams=3, num_return=3)
    assert isinstance(beams, list) and len(set(beams)) == 3
    assert beams[0] == g.generate("the quick", max_new_tokens=12, num_beams=3)
    assert len(g.generate(["the quick", "hello"], max_new_tokens=5, seed=1, num_return=2)) == 4
    with pytest.raises(OwnGPTError, match="a stream is one text, but num_return is 2"):
        g.stream("hello", num_return=2)


def test_owngpt_load_applies_a_lora_adapter(tok, model, tmp_path):
    import copy

    from owngpt.checkpoint.adapter import save_adapter
    from owngpt.model.lora import LoRAConfig, apply_lora

    run = save_run(tmp_path, tok, model)
    base = owngpt.load(run, device="cpu")
    tuned = copy.deepcopy(model)
    lcfg = LoRAConfig(rank=2, targets=["c_attn"])
    apply_lora(tuned, lcfg)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0.0, 1.0)  # a fresh adapter is a no-op; make it change the outputs
    tuned.eval()
    adapter = save_adapter(tmp_path / "adapter", tuned, lcfg, base.meta)
    g = owngpt.load(run, adapter=adapter, device="cpu")
    want = generate(tuned, tok, ["the quick"], greedy(20))[0]
    assert g.generate("the quick", max_new_tokens=20, temperature=0) == want
    assert want != base.generate("the quick", max_new_tokens=20, temperature=0)


@pytest.mark.parametrize("native,device,asked,want", [
    ("avx512_bf16", "cpu", "auto", torch.bfloat16), ("amx", "cpu", "auto", torch.bfloat16),
    (None, "cpu", "auto", torch.float32), ("amx", "cpu", "float32", torch.float32),
    (None, "cpu", "bfloat16", torch.bfloat16)])
def test_inference_dtype_follows_the_cpus_native_bf16(monkeypatch, native, device, asked, want):
    from owngpt import runtime

    monkeypatch.setattr(runtime, "cpu_bf16_support", lambda: native)
    assert runtime.inference_dtype(torch.device(device), asked) == want
    with pytest.raises(OwnGPTError, match="--dtype must be auto, float32, bfloat16"):
        runtime.inference_dtype(torch.device(device), "half")


def test_load_on_a_native_bf16_cpu_generates_in_bf16(tok, model, tmp_path, monkeypatch):
    """auto on an avx512_bf16 CPU (probe patched): bf16 weights, the adapter's too; greedy text with the KV cache ==
    without it; next-token logits within 2% of their largest magnitude from fp32 (bf16 keeps 8 bits of mantissa:
    ~0.4% per rounding, a few roundings per layer), and the same greedy text as fp32 on this model."""
    from owngpt import runtime
    from owngpt.checkpoint.adapter import save_adapter
    from owngpt.generate.engine import generate_ids
    from owngpt.model.lora import LoRAConfig, apply_lora

    run = save_run(tmp_path, tok, model)
    monkeypatch.setattr(runtime, "cpu_bf16_support", lambda: "avx512_bf16")
    g = owngpt.load(run, device="cpu")
    assert {p.dtype for p in g.model.parameters()} == {torch.bfloat16}
    ids = torch.tensor([tok.encode("the quick brown fox")])
    with torch.no_grad():
        fp32 = model(ids)[:, -1]
        assert (g.model(ids)[:, -1].float() - fp32).abs().max() <= 0.02 * fp32.abs().max()
    prompt = [tok.encode("the quick")]
    cached = generate_ids(g.model, prompt, greedy(20), use_cache=True)
    assert cached == generate_ids(g.model, prompt, greedy(20), use_cache=False)
    assert g.generate("the quick", max_new_tokens=20, temperature=0) == generate(model, tok, ["the quick"], greedy(20))[0]
    assert {p.dtype for p in owngpt.load(run, device="cpu", dtype="float32").model.parameters()} == {torch.float32}

    tuned = owngpt.load(run, device="cpu", dtype="float32").model
    lcfg = LoRAConfig(rank=2, targets=["c_attn"])
    apply_lora(tuned, lcfg)
    adapter = save_adapter(tmp_path / "adapter", tuned, lcfg, g.meta)
    with_adapter = owngpt.load(run, adapter=adapter, device="cpu")
    assert {p.dtype for p in with_adapter.model.parameters()} == {torch.bfloat16}
    assert isinstance(with_adapter.generate("the quick", max_new_tokens=5, seed=0), str)
