"""Hugging Face GPT-2 interop: a tiny random GPT2LMHeadModel gives the same logits in owngpt, and back."""

from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.export.hf import (
    config_from_hf,
    gpt2_state_from_hf,
    hf_state_from_gpt,
    load_hf_gpt2,
    save_hf_gpt2,
)
from owngpt.model.gpt import GPT

transformers = pytest.importorskip("transformers")


def tiny_hf(tie: bool = True):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=61, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                                  tie_word_embeddings=tie, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # HF starts biases at 0 and norms at 1: randomise so the mapping of every tensor shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def ids(B=2, T=17):
    return torch.randint(0, 61, (B, T), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("tie", [True, False])
def test_logits_match_hf(tie):
    hf = tiny_hf(tie)
    ours = load_hf_gpt2(hf)
    assert ours.cfg.tie_embeddings is tie and ours.cfg.block_size == 24
    x = ids()
    with torch.no_grad():
        assert_close(ours(x), hf(x).logits, rtol=1e-5, atol=1e-5)


def test_round_trip_state_and_hf_load(tmp_path):
    hf = tiny_hf()
    ours = load_hf_gpt2(hf)
    back = hf_state_from_gpt(ours)
    ref = {k: v for k, v in hf.state_dict().items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    assert set(back) == set(ref)
    for k in ref:
        assert torch.equal(back[k], ref[k]), k
    # written folder loads in transformers and in owngpt with identical logits
    save_hf_gpt2(ours, tmp_path / "hf")
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ours2 = load_hf_gpt2(tmp_path / "hf")
    x = ids()
    with torch.no_grad():
        assert_close(again(x).logits, hf(x).logits, rtol=1e-5, atol=1e-5)
        assert_close(ours2(x), ours(x), rtol=0, atol=0)


def test_hf_folder_without_prefix_and_lm_head(tmp_path):
    """HF's own gpt2 model.safetensors has names like 'h.0.attn.c_attn.weight' and no lm_head."""
    from safetensors.torch import save_file

    hf = tiny_hf()
    state = {k.removeprefix("transformer."): v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    (tmp_path / "m").mkdir()
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    (tmp_path / "m" / "config.json").write_text(json.dumps(hf.config.to_dict()))
    ours = load_hf_gpt2(tmp_path / "m")
    with torch.no_grad():
        assert_close(ours(ids()), hf(ids()).logits, rtol=1e-5, atol=1e-5)


def test_refusals(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps(tiny_hf().config.to_dict()))
    (tmp_path / "b" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(OwnGPTError, match="cannot read it as PyTorch weights"):
        load_hf_gpt2(tmp_path / "b")
    with pytest.raises(OwnGPTError, match="weights file"):
        load_hf_gpt2(tmp_path / "b" / "pytorch_model.bin")
    with pytest.raises(OwnGPTError, match="activation_function"):
        config_from_hf(dict(tiny_hf().config.to_dict(), activation_function="relu"))
    modern = GPT(ModelConfig(preset="modern", vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(OwnGPTError, match="preset gpt2"):
        hf_state_from_gpt(modern)
    with pytest.raises(OwnGPTError, match="wte"):
        gpt2_state_from_hf({"foo": torch.zeros(1)})
    (tmp_path / "a-file").write_text("x")
    gpt2 = GPT(ModelConfig(preset="gpt2", vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(OwnGPTError, match="it is a file, not a folder"):
        save_hf_gpt2(gpt2, tmp_path / "a-file")


def test_export_names_the_tokenizers_special_ids(tmp_path):
    """HF's generate() stops at owngpt's <|endoftext|> / <|im_end|>, not at GPT-2's 50256 (outside the vocab)."""
    from owngpt.tokenizer import train_char

    tok = train_char(["hello world"])
    ours = load_hf_gpt2(tiny_hf())
    save_hf_gpt2(ours, tmp_path / "hf", tokenizer=tok)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    assert hf.config.eos_token_id == tok.eot_id and hf.config.pad_token_id == tok.pad_id
    assert sorted(hf.generation_config.eos_token_id) == sorted([tok.eot_id, tok.im_end_id, tok.im_start_id])
    save_hf_gpt2(ours, tmp_path / "plain")
    assert transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "plain").config.eos_token_id is None
