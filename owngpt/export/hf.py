"""Hugging Face GPT-2 interop: load GPT2LMHeadModel weights into owngpt's GPT, and write them back.

owngpt's gpt2 preset is GPT-2's exact maths with the same parameter names, so conversion is a name mapping
plus one transpose: HF's GPT-2 uses `Conv1D` layers whose weights are stored (in, out), where nn.Linear
stores (out, in). HF's causal-mask buffers (`attn.bias`, `attn.masked_bias`) are dropped.

Weights are read only from safetensors (a pickle `.bin` can run code when loaded); `transformers` is
optional and imported only when a transformers model object is passed in or exported to.

Not handled: owngpt's baselines (LSTM, seq2seq: refused), other HF architectures (GPT-Neo, LLaMA, ...), exact-erf
GELU variants, sharded `.bin` files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write, atomic_write_text, output_dir
from owngpt.model.gpt import GPT

# nn.Linear in owngpt, Conv1D in HF: these weights are transposed in both directions
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def gpt2_state_from_hf(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An owngpt state dict from a GPT2LMHeadModel (or GPT2Model) state dict.

    Accepts names with or without the `transformer.` prefix (HF's own model.safetensors omits it) and a
    missing `lm_head.weight` (tied to wte, so HF does not store it)."""
    out: dict[str, Tensor] = {}
    for name, tensor in hf_state.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers, not weights
        if not (name.startswith("transformer.") or name.startswith("lm_head.")):
            name = "transformer." + name
        if name.endswith(CONV1D):
            tensor = tensor.t()  # (in, out) -> (out, in)
        out[name] = tensor.contiguous()
    if "transformer.wte.weight" not in out:
        raise OwnGPTError("these weights are not GPT-2's: there is no 'wte.weight' (token embedding)")
    out.setdefault("lm_head.weight", out["transformer.wte.weight"])
    return out


def hf_state_from_gpt(model: GPT) -> dict[str, Tensor]:
    """GPT2LMHeadModel names and layouts (Conv1D weights transposed) for a gpt2-maths owngpt model."""
    _check_exportable(model.cfg)
    out = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach()
        if name.endswith(CONV1D):
            tensor = tensor.t()  # (out, in) -> (in, out)
        out[name] = tensor.contiguous()
    return out


def config_from_hf(hf_config: dict[str, Any]) -> ModelConfig:
    """A gpt2-preset ModelConfig from a GPT-2 config.json (or `GPT2Config.to_dict()`)."""
    cfg = dict(hf_config)
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise OwnGPTError(f"config.json describes a {cfg.get('model_type')!r} model; only GPT-2 ('gpt2') can be loaded")
    act = cfg.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise OwnGPTError(f"config.json: activation_function {act!r} is not GPT-2's tanh GELU ({', '.join(TANH_GELUS)})")
    if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("scale_attn_weights") is False:
        raise OwnGPTError("config.json: attention scaling other than 1/sqrt(head size) is not supported")
    return ModelConfig(
        preset="gpt2",
        vocab_size=int(cfg["vocab_size"]),
        block_size=int(cfg.get("n_positions") or cfg.get("n_ctx")),
        n_layer=int(cfg["n_layer"]),
        n_head=int(cfg["n_head"]),
        n_embd=int(cfg["n_embd"]),
        mlp_hidden=cfg.get("n_inner"),  # None = 4 * n_embd, as in HF
        norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        dropout=0.0,  # inference by default; set cfg.dropout before fine-tuning if wanted
    )


def hf_config_from_gpt(cfg: ModelConfig, tokenizer=None) -> dict[str, Any]:
    """A GPT-2 config.json dict for an exportable owngpt config. With the model's tokenizer its special ids are
    named (bos = eos = <|endoftext|> as in GPT-2, pad = <|pad|>); without, they are left empty rather than
    GPT2Config's default 50256, which is not an id of an owngpt vocabulary."""
    _check_exportable(cfg)
    special = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tokenizer is not None:
        special = {"bos_token_id": tokenizer.eot_id, "eos_token_id": tokenizer.eot_id, "pad_token_id": tokenizer.pad_id}
    return {**special,
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size, "n_ctx": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
        "n_head": cfg.n_head, "n_inner": cfg.mlp_hidden, "activation_function": "gelu_new",
        "layer_norm_epsilon": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "initializer_range": 0.02, "scale_attn_weights": True,
    }


def _check_exportable(cfg: ModelConfig) -> None:
    wanted = {"pos": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True}
    for key, value in wanted.items():
        if getattr(cfg, key) != value:
            raise OwnGPTError(f"only GPT-2-maths models export to Hugging Face GPT-2: this model has "
                              f"{key}={getattr(cfg, key)!r} (needs {value!r}; use preset gpt2)")
    if cfg.n_kv_head != cfg.n_head:
        raise OwnGPTError("grouped-query attention (n_kv_head < n_head) has no Hugging Face GPT-2 equivalent")


def _read_safetensors(folder: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    single = folder / "model.safetensors"
    if single.is_file():
        return load_file(str(single))
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # sharded: the index maps each tensor to its shard
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    if any(folder.glob("*.bin")):
        raise OwnGPTError(f"{folder} has only pickle weights (.bin), which owngpt does not load because loading "
                          "pickles can run code; convert them to model.safetensors first (e.g. in transformers: "
                          "model.save_pretrained(folder, safe_serialization=True))")
    raise OwnGPTError(f"{folder} has no model.safetensors")


def load_hf_gpt2(path_or_model: str | Path | Any) -> GPT:
    """An owngpt GPT (eval mode) from a local HF GPT-2 folder (config.json + model.safetensors) or a
    transformers GPT2LMHeadModel object. Never touches the network."""
    if isinstance(path_or_model, (str, Path)):
        folder = Path(path_or_model)
        if folder.is_file() and folder.suffix == ".bin":
            raise OwnGPTError(f"{folder} is a pickle file; owngpt loads only safetensors (convert it with "
                              "transformers' save_pretrained(..., safe_serialization=True))")
        if not (folder / "config.json").is_file():
            raise OwnGPTError(f"{folder} is not a Hugging Face model folder (no config.json)")
        hf_cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        hf_state = _read_safetensors(folder)
    elif hasattr(path_or_model, "state_dict") and hasattr(path_or_model, "config"):
        hf_cfg = path_or_model.config.to_dict()
        hf_state = path_or_model.state_dict()
    else:
        raise OwnGPTError(f"cannot load GPT-2 from {type(path_or_model).__name__}: give a folder or a transformers model")
    cfg = config_from_hf(hf_cfg)
    state = gpt2_state_from_hf(hf_state)
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise OwnGPTError(f"the GPT-2 weights do not fit config.json: missing {sorted(missing)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]}")
    return model.eval()


def save_hf_gpt2(model: GPT, directory: str | Path, tokenizer=None) -> Path:
    """Write config.json + model.safetensors that transformers' GPT2LMHeadModel.from_pretrained reads; with the
    tokenizer, also generation_config.json, whose end ids (<|endoftext|>, <|im_end|>) make HF's generate() stop
    where owngpt's does."""
    from safetensors.torch import save_file

    arch = getattr(model, "arch", "gpt")
    if arch != "gpt":
        raise OwnGPTError(f"only GPT models export to Hugging Face GPT-2, and this is a {arch} model")
    directory = output_dir(directory)
    state = hf_state_from_gpt(model)
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight")  # shared with wte: safetensors refuses shared tensors, HF re-ties it
    weights = {k: v.cpu() for k, v in state.items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(weights, str(tmp), metadata={"format": "pt"}))
    config = hf_config_from_gpt(model.cfg, tokenizer)
    atomic_write_text(directory / "config.json", json.dumps(config, indent=2))
    if tokenizer is not None:
        generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": [tokenizer.eot_id, tokenizer.im_end_id],
                      "pad_token_id": config["pad_token_id"]}
        atomic_write_text(directory / "generation_config.json", json.dumps(generation, indent=2))
    return directory
