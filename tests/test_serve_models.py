"""Served models: ids from run folders, LoRA adapters over a shared base (one persona each, the base's weights held
once), and clear errors for clashing ids."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from owngpt.checkpoint.adapter import save_adapter
from owngpt.checkpoint.format import read_meta, save_checkpoint
from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.errors import OwnGPTError
from owngpt.model.lora import LoRAConfig, apply_lora
from owngpt.serve.models import load_served, model_id, parse_adapter
from serve_fixtures import char_tokenizer, tiny_gpt


def save_run(path, tok, model, system=None):
    meta = CheckpointMeta(model_config=asdict(model.cfg), tokenizer_hash=tok.hash,
                          run_config={"chat": {"system_prompt": system}} if system else {})
    save_checkpoint(path, 1, model.state_dict(), meta, None, tokenizer=tok, best=True)
    return path


def lora_run(tmp_path, tok, base_dir, name: str, system: str, seed: int):
    """An `owngpt sft --lora` run folder: adapter-only checkpoints with its chat defaults, and RUN/adapter."""
    tuned = tiny_gpt(tok)
    cfg = LoRAConfig(rank=2, alpha=4.0, dropout=0.0, targets=["c_attn"])
    apply_lora(tuned, cfg)
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in tuned.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    run = tmp_path / name
    meta = CheckpointMeta(model_config=asdict(tuned.cfg), tokenizer_hash=tok.hash, weights_filtered=True,
                          run_config={"chat": {"system_prompt": system}})
    save_checkpoint(run, 1, {k: v for k, v in tuned.state_dict().items() if "lora_" in k}, meta, None, tokenizer=tok,
                    best=True)
    save_adapter(run / "adapter", tuned, cfg, read_meta(base_dir / "best"))
    return run / "adapter", tuned.eval()


def test_adapters_share_the_base_weights_and_bring_their_personas(tmp_path):
    tok = char_tokenizer()
    base_dir = save_run(tmp_path / "base", tok, tiny_gpt(tok), system="You are Base.")
    alice, alice_model = lora_run(tmp_path, tok, base_dir, "alice", "You are Alice.", 1)
    bob, _ = lora_run(tmp_path, tok, base_dir, "bob", "You are Bob.", 2)
    served = load_served([str(base_dir)], [f"alice={alice}", str(bob)], device="cpu")
    assert list(served) == ["base", "alice", "bob"]  # a bare DIR is named after its run folder
    assert [served[m].reply.system for m in served] == ["You are Base.", "You are Alice.", "You are Bob."]
    base_w = served["base"].reply.model.transformer.h[0].attn.c_attn.weight
    for name in ("alice", "bob"):
        w = served[name].reply.model.transformer.h[0].attn.c_attn.weight
        assert w.data_ptr() == base_w.data_ptr()  # one copy of the base in memory
    x = torch.tensor([tok.encode("hi there")])
    with torch.no_grad():
        torch.testing.assert_close(served["alice"].reply.model(x), alice_model(x))
        assert not torch.allclose(served["alice"].reply.model(x), served["bob"].reply.model(x))
        assert not torch.allclose(served["base"].reply.model(x), served["alice"].reply.model(x))
    assert served["alice"].card()["adapter"] == str(alice) and served["alice"].card()["base"] == str(base_dir)


def test_ids_and_clashes(tmp_path):
    assert model_id(tmp_path / "runs" / "mine" / "best") == "mine"
    assert model_id(tmp_path / "mine" / "checkpoints" / "step_0000100") == "mine-step_0000100"
    assert parse_adapter("alice=runs/a/adapter") == ("alice", "runs/a/adapter")
    assert parse_adapter("runs/alice/adapter") == ("alice", "runs/alice/adapter")
    with pytest.raises(OwnGPTError, match="NAME=DIR"):
        parse_adapter("=x")
    tok = char_tokenizer()
    a = save_run(tmp_path / "a" / "chat", tok, tiny_gpt(tok))
    b = save_run(tmp_path / "b" / "chat", tok, tiny_gpt(tok))
    with pytest.raises(OwnGPTError, match="both be called 'chat'"):
        load_served([str(a), str(b)], device="cpu")
    with pytest.raises(OwnGPTError, match="at least one checkpoint"):
        load_served([], device="cpu")
