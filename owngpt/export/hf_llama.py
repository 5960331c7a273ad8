"""Hugging Face Llama export: an owngpt GPT with the `modern` maths as a LlamaForCausalLM folder.

The maths already agree, so conversion is a renaming plus two splits of fused matrices:
  - c_attn's rows [q (n_head*hd) | k (n_kv_head*hd) | v (n_kv_head*hd)] become q_proj, k_proj and v_proj; GQA is
    Llama's num_key_value_heads (consecutive query heads share a k/v head in both).
  - SwiGLU's c_fc rows [gate | up] become gate_proj and up_proj (silu(gate) * up in both).
  - RoPE needs no permutation of q/k: owngpt rotates the pairs (x[i], x[i + hd/2]) by position * theta^(-2i/hd),
    which is HF's `rotate_half` convention. (Meta's original checkpoints pair neighbours (x[2i], x[2i+1]); HF's
    conversion script permutes those. owngpt never had that layout.)
RMSNorm (x * rsqrt(mean(x^2) + eps) * w, the mean in fp32) is LlamaRMSNorm, and the 1/sqrt(hd) attention scale is
LlamaAttention's. Biases map to attention_bias (q, k, v and o, as owngpt's c_attn and c_proj) and mlp_bias.

Not handled: importing Llama checkpoints; settings Llama lacks (learned or sinusoidal positions, LayerNorm, a GELU
MLP) are refused by name (`llama_problem`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.export.hf import hf_generation_config, hf_special_ids
from owngpt.io import atomic_write, atomic_write_text, output_dir
from owngpt.model.gpt import GPT, mlp_hidden_size

# The owngpt setting Llama needs for each field it fixes, and why a different value cannot be expressed.
LLAMA_NEEDS = {
    "pos": ("rope", "Llama encodes positions only by rotary embeddings"),
    "norm": ("rmsnorm", "Llama normalises with RMSNorm"),
    "mlp": ("swiglu", "Llama's MLP is SwiGLU"),
}


def llama_problem(cfg: ModelConfig) -> str | None:
    """Why this config has no LlamaForCausalLM equivalent (naming the field), or None when it has one."""
    for field, (needed, why) in LLAMA_NEEDS.items():
        value = getattr(cfg, field)
        if value != needed:
            return f"model.{field}={value!r}: {why} (model.{field}={needed!r})"
    return None


def _check(cfg: ModelConfig) -> None:
    problem = llama_problem(cfg)
    if problem is not None:
        raise OwnGPTError(f"this model does not fit Hugging Face's Llama layout: {problem}")


def hf_llama_config(cfg: ModelConfig, tokenizer=None, dtype: str = "float32") -> dict[str, Any]:
    """A LlamaForCausalLM config.json dict for a Llama-maths owngpt config. With the model's tokenizer its special
    ids are named as in the GPT-2 export (bos = eos = <|endoftext|>, pad = <|pad|>); without, they are left empty
    rather than LlamaConfig's defaults 1 and 2, which are owngpt's <|pad|> and <|im_start|>."""
    _check(cfg)
    return {**hf_special_ids(tokenizer),
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd, "intermediate_size": mlp_hidden_size(cfg), "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.head_dim,
        "hidden_act": "silu", "max_position_embeddings": cfg.block_size, "rms_norm_eps": cfg.norm_eps,
        # rope_parameters is transformers 5's field, rope_theta the older name that 4.x (and llama.cpp's
        # converter) read; both say the same, so either reader gets owngpt's theta
        "rope_theta": cfg.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "attention_dropout": 0.0,
        "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": 0.02, "use_cache": True, "dtype": dtype,
    }


def llama_state_from_gpt(model: GPT) -> dict[str, Tensor]:
    """LlamaForCausalLM names for a Llama-maths owngpt model's weights (lm_head left out when tied to wte)."""
    cfg = model.cfg
    _check(cfg)
    hd, hidden = cfg.head_dim, mlp_hidden_size(cfg)
    qkv_rows = [cfg.n_head * hd, cfg.n_kv_head * hd, cfg.n_kv_head * hd]
    kinds = ("weight", "bias") if cfg.bias else ("weight",)
    src = {k: v.detach() for k, v in model.state_dict().items()}
    out = {"model.embed_tokens.weight": src["transformer.wte.weight"], "model.norm.weight": src["transformer.ln_f.weight"]}
    if not cfg.tie_embeddings:  # tied: HF re-ties lm_head to embed_tokens (safetensors refuses shared tensors)
        out["lm_head.weight"] = src["lm_head.weight"]
    for i in range(cfg.n_layer):
        h, m = f"transformer.h.{i}.", f"model.layers.{i}."
        out[m + "input_layernorm.weight"] = src[h + "ln_1.weight"]
        out[m + "post_attention_layernorm.weight"] = src[h + "ln_2.weight"]
        for kind in kinds:  # a bias splits along the same rows as its weight
            q, k, v = src[h + "attn.c_attn." + kind].split(qkv_rows, dim=0)  # (nh*hd | nkv*hd | nkv*hd, ...)
            gate, up = src[h + "mlp.c_fc." + kind].split([hidden, hidden], dim=0)  # (hidden | hidden, ...)
            out.update({
                m + "self_attn.q_proj." + kind: q, m + "self_attn.k_proj." + kind: k, m + "self_attn.v_proj." + kind: v,
                m + "self_attn.o_proj." + kind: src[h + "attn.c_proj." + kind],
                m + "mlp.gate_proj." + kind: gate, m + "mlp.up_proj." + kind: up,
                m + "mlp.down_proj." + kind: src[h + "mlp.c_proj." + kind],
            })
    return {name: t.cpu().contiguous() for name, t in out.items()}  # split views -> their own storage


def save_hf_llama(model: GPT, directory: str | Path, tokenizer=None) -> Path:
    """Write config.json + model.safetensors that transformers' LlamaForCausalLM.from_pretrained reads (the weights
    in the dtype the model holds), and with the tokenizer generation_config.json (its end ids). The tokenizer files are
    owngpt/export/hf_folder.py's."""
    from safetensors.torch import save_file

    arch = getattr(model, "arch", "gpt")
    if arch != "gpt":
        raise OwnGPTError(f"only GPT models export to Hugging Face Llama, and this is a {arch} model")
    state = llama_state_from_gpt(model)
    dtype = str(model.transformer.wte.weight.dtype).removeprefix("torch.")
    config = hf_llama_config(model.cfg, tokenizer, dtype)
    directory = output_dir(directory)
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    atomic_write_text(directory / "config.json", json.dumps(config, indent=2))
    if tokenizer is not None:
        atomic_write_text(directory / "generation_config.json", json.dumps(hf_generation_config(tokenizer), indent=2))
    return directory
