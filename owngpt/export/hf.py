"""Hugging Face GPT-2 interop: GPT2LMHeadModel weights into owngpt's GPT and back, and `import_hf`, which makes an
owngpt run folder (model + tokenizer + chat format) from a GPT-2-family model folder.

owngpt's gpt2 preset is GPT-2's exact maths with the same parameter names, so conversion is a name mapping
plus one transpose: HF's GPT-2 uses `Conv1D` layers whose weights are stored (in, out), where nn.Linear
stores (out, in). HF's causal-mask buffers (`attn.bias`, `attn.masked_bias`) are dropped.

Weights are read from safetensors, or from a pickle `.bin` only through torch.load(weights_only=True), which
unpickles tensors and plain containers and nothing else (a file that needs more is refused, never loaded unsafely).
`transformers` is optional and imported only when a transformers model object is passed in or exported to.

Not handled: owngpt's baselines (LSTM, seq2seq: refused), other HF architectures (GPT-Neo, LLaMA, ...), exact-erf
GELU variants.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
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


def config_from_hf(hf_config: dict[str, Any], where: str = "config.json") -> ModelConfig:
    """A gpt2-preset ModelConfig from a GPT-2 config.json (or `GPT2Config.to_dict()`); errors name `where`."""
    cfg = dict(hf_config)
    if cfg.get("model_type", "gpt2") != "gpt2":
        archs = ", ".join(cfg.get("architectures") or []) or "no architectures listed"
        raise OwnGPTError(f"{where} holds a {cfg.get('model_type')!r} model ({archs}), not GPT-2: owngpt imports the "
                          "GPT-2 family (GPT-2, DialoGPT, GPT2-chitchat and other GPT2LMHeadModel checkpoints)")
    act = cfg.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise OwnGPTError(f"{where}: activation_function {act!r} is not GPT-2's tanh GELU ({', '.join(TANH_GELUS)})")
    if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("scale_attn_weights") is False:
        raise OwnGPTError(f"{where}: attention scaling other than 1/sqrt(head size) is not supported")
    sizes = {}
    for field, keys in (("vocab_size", ("vocab_size",)), ("block_size", ("n_positions", "n_ctx")),
                        ("n_layer", ("n_layer",)), ("n_head", ("n_head",)), ("n_embd", ("n_embd",))):
        value = next((cfg[k] for k in keys if cfg.get(k) is not None), None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OwnGPTError(f"{where}: {' or '.join(keys)} must be a positive integer, not {value!r}")
        sizes[field] = value
    return ModelConfig(
        preset="gpt2",
        **sizes,
        mlp_hidden=cfg.get("n_inner"),  # None = 4 * n_embd, as in HF
        norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        dropout=0.0,  # inference by default; set cfg.dropout before fine-tuning if wanted
    )


def hf_special_ids(tokenizer=None) -> dict[str, int | None]:
    """config.json's special ids, the same in both exported layouts: bos = eos = <|endoftext|> (as in GPT-2), pad =
    <|pad|>; all None without the tokenizer (rather than a library default that is not an owngpt id)."""
    if tokenizer is None:
        return {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    return {"bos_token_id": tokenizer.eot_id, "eos_token_id": tokenizer.eot_id, "pad_token_id": tokenizer.pad_id}


def hf_config_from_gpt(cfg: ModelConfig, tokenizer=None) -> dict[str, Any]:
    """A GPT-2 config.json dict for an exportable owngpt config. With the model's tokenizer its special ids are
    named (bos = eos = <|endoftext|> as in GPT-2, pad = <|pad|>); without, they are left empty rather than
    GPT2Config's default 50256, which is not an id of an owngpt vocabulary."""
    _check_exportable(cfg)
    return {**hf_special_ids(tokenizer),
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size, "n_ctx": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
        "n_head": cfg.n_head, "n_inner": cfg.mlp_hidden, "activation_function": "gelu_new",
        "layer_norm_epsilon": cfg.norm_eps, "tie_word_embeddings": cfg.tie_embeddings,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "initializer_range": 0.02, "scale_attn_weights": True,
    }


def hf_generation_config(tok) -> dict[str, Any]:
    """generation_config.json: HF's generate() stops at every id where owngpt's chat ends a reply (`reply_stop_ids`:
    <|im_end|>, <|endoftext|>, <|im_start|>, and GPT2-chitchat's [SEP] in that format)."""
    from owngpt.chat.reply import reply_stop_ids

    return {"bos_token_id": tok.eot_id, "eos_token_id": list(reply_stop_ids(tok)), "pad_token_id": tok.pad_id}


def _check_exportable(cfg: ModelConfig) -> None:
    wanted = {"pos": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True}
    for key, value in wanted.items():
        if getattr(cfg, key) != value:
            raise OwnGPTError(f"only GPT-2-maths models export to Hugging Face GPT-2: this model has "
                              f"{key}={getattr(cfg, key)!r} (needs {value!r}; use preset gpt2)")
    if cfg.n_kv_head != cfg.n_head:
        raise OwnGPTError("grouped-query attention (n_kv_head < n_head) has no Hugging Face GPT-2 equivalent")
    if cfg.head_dim * cfg.n_head != cfg.n_embd:
        raise OwnGPTError(f"Hugging Face GPT-2 makes each head n_embd / n_head wide, but this model's heads are "
                          f"{cfg.head_dim} wide with n_embd={cfg.n_embd}, n_head={cfg.n_head} (head_size, set by "
                          "`owngpt prune --structured heads`)")


def read_hf_weights(folder: Path) -> dict[str, Tensor]:
    """A model folder's weights: model.safetensors (single or sharded), else pytorch_model.bin read with
    torch.load(weights_only=True). A .bin that needs more than tensors to unpickle is refused with the reason."""
    from safetensors.torch import load_file

    def read(file: Path) -> dict[str, Tensor]:
        if not file.is_file():
            raise OwnGPTError(f"{file} is missing (model.safetensors.index.json names it)")
        try:
            return load_file(str(file))
        except Exception as e:  # safetensors' own error: truncated header, wrong offsets, ...
            raise OwnGPTError(f"{file}: not a readable safetensors file ({e})") from None

    single = folder / "model.safetensors"
    if single.is_file():
        return read(single)
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # sharded: the index maps each tensor to its shard
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise OwnGPTError(f"{index}: not a safetensors index (a JSON object with a weight_map): {e}") from None
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(read(folder / shard))
        return state
    bins = sorted(folder.glob("pytorch_model*.bin")) or sorted(folder.glob("*.bin"))
    if bins:
        state = {}
        for file in bins:
            state.update(_read_pickle_weights(file))
        return state
    raise OwnGPTError(f"{folder} has no weights: expected model.safetensors or pytorch_model.bin")


def _read_pickle_weights(file: Path) -> dict[str, Tensor]:
    """Tensors of a torch.save'd state dict, with weights_only=True: unpickling that file can then build tensors and
    plain containers only, never run code. Anything else in it is refused, with the way out."""
    import pickle

    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line), None)
        if found is None:  # not a class it refused: the file is not a pickle at all (or is cut short)
            raise OwnGPTError(f"{file}: cannot read it as PyTorch weights (not a torch.save file, or truncated)") from None
        raise OwnGPTError(f"{file} holds more than tensors: torch.load with weights_only=True refused it "
                          f"({found.split(' was not')[0].replace('WeightsUnpickler error: ', '')}); owngpt never loads a "
                          "pickle unsafely. If you trust the file, convert it to model.safetensors in transformers: "
                          "model.save_pretrained(folder, safe_serialization=True)") from None
    except Exception as e:  # truncated or not a torch file at all
        raise OwnGPTError(f"{file}: cannot read it as PyTorch weights: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OwnGPTError(f"{file} is not a state dict (a mapping of names to tensors)")
    return state


def read_hf_config(folder: Path) -> dict[str, Any]:
    """config.json of a Hugging Face model folder, as a dict (`config_from_hf` checks what it describes)."""
    if folder.is_file() and folder.suffix == ".bin":
        raise OwnGPTError(f"{folder} is a weights file: give the folder that holds it and its config.json")
    if not (folder / "config.json").is_file():
        raise OwnGPTError(f"{folder} is not a Hugging Face model folder (no config.json)")
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OwnGPTError(f"{folder / 'config.json'}: cannot read it as JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise OwnGPTError(f"{folder / 'config.json'}: expected a JSON object")
    return cfg


def load_hf_gpt2(path_or_model: str | Path | Any) -> GPT:
    """An owngpt GPT (eval mode) from a local HF GPT-2 folder (config.json + model.safetensors) or a
    transformers GPT2LMHeadModel object. Never touches the network."""
    if isinstance(path_or_model, (str, Path)):
        folder = Path(path_or_model)
        hf_cfg = read_hf_config(folder)
        hf_state = read_hf_weights(folder)
    elif hasattr(path_or_model, "state_dict") and hasattr(path_or_model, "config"):
        hf_cfg = path_or_model.config.to_dict()
        hf_state = path_or_model.state_dict()
    else:
        raise OwnGPTError(f"cannot load GPT-2 from {type(path_or_model).__name__}: give a folder or a transformers model")
    cfg = config_from_hf(hf_cfg)
    return gpt_from_state(cfg, gpt2_state_from_hf(hf_state))


def gpt_from_state(cfg: ModelConfig, state: dict[str, Tensor]) -> GPT:
    """A GPT (eval mode) of `cfg` holding `state`; every name and shape that does not fit config.json is named."""
    model = GPT(cfg)
    own = model.state_dict()
    wrong = [f"{name} is {tuple(t.shape)} where config.json implies {tuple(own[name].shape)}"
             for name, t in state.items() if name in own and tuple(t.shape) != tuple(own[name].shape)]
    if wrong:
        raise OwnGPTError(f"the weights do not fit config.json: {'; '.join(wrong[:3])}"
                          + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise OwnGPTError(f"the GPT-2 weights do not fit config.json: missing {sorted(missing)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]}")
    return model.eval()


def save_hf_gpt2(model: GPT, directory: str | Path, tokenizer=None) -> Path:
    """Write config.json + model.safetensors that transformers' GPT2LMHeadModel.from_pretrained reads; with the
    tokenizer, also generation_config.json (`hf_generation_config`), whose end ids make HF's generate() stop
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
        atomic_write_text(directory / "generation_config.json", json.dumps(hf_generation_config(tokenizer), indent=2))
    return directory


# ----------------------------------------------------------------------------- a run folder from a HF model


def remap_rows(weight: Tensor, source_ids: list[int]) -> Tensor:
    """Rows of an embedding (or output head) in owngpt's id order: row i is the source's row source_ids[i]. A token
    the source lacks (-1: ChatML's specials) starts near the mean of the source's rows: the mean keeps its logit
    ordinary until fine-tuning teaches it (a random row can outscore every real token; Hewitt 2021), and a little
    noise (a tenth of each dimension's spread, fixed seed) keeps the new tokens apart from one another, so
    <|im_start|> and <|im_end|> are not one token to the model, even where training cannot move them (LoRA)."""
    import torch

    index = torch.tensor(source_ids)
    rows = weight[index.clamp(min=0)].clone()  # (V_owngpt, C)
    new = index < 0
    if bool(new.any()):
        w = weight.float()
        noise = torch.randn(int(new.sum()), w.shape[1], generator=torch.Generator().manual_seed(0))
        rows[new] = (w.mean(dim=0) + 0.1 * w.std(dim=0) * noise).to(weight.dtype)
    return rows


def imported_gpt(folder: str | Path, source_ids: list[int], cfg: ModelConfig | None = None) -> GPT:
    """The GPT-2-family model in `folder` (its config.json read here unless `cfg` is given) with its vocabulary in
    owngpt's order (see remap_rows)."""
    folder = Path(folder)
    cfg = cfg or config_from_hf(read_hf_config(folder), str(folder / "config.json"))
    state = gpt2_state_from_hf(read_hf_weights(folder))
    rows = state["transformer.wte.weight"].shape[0]
    if rows != cfg.vocab_size:
        raise OwnGPTError(f"{folder}: the token embedding has {rows} rows but config.json says vocab_size {cfg.vocab_size}")
    top = max(source_ids)
    if top >= rows:
        raise OwnGPTError(f"{folder}: the tokenizer has token id {top} but the model only {rows} embedding rows: "
                          "this tokenizer belongs to another model")
    tied = cfg.tie_embeddings or state["lm_head.weight"] is state["transformer.wte.weight"]
    state["transformer.wte.weight"] = remap_rows(state["transformer.wte.weight"], source_ids)
    state["lm_head.weight"] = state["transformer.wte.weight"] if tied else remap_rows(state["lm_head.weight"], source_ids)
    return gpt_from_state(replace(cfg, vocab_size=len(source_ids)), state)


def import_hf(folder: str | Path, out: str | Path, *, tokenizer: str | Path | None = None,
              chat_format: str = "auto", backward: str | Path | None = None,
              lowercase: bool | None = None) -> dict[str, Any]:
    """`owngpt import-hf`: a GPT-2-family model folder (config.json + model.safetensors or pytorch_model.bin) and its
    tokenizer (`tokenizer`, default: the model folder) become an owngpt run folder `out` that sft, chat, generate,
    eval and serve use like any other.

    chat_format: "auto" (GPT2-chitchat's [CLS]/[SEP] format for a BERT-style vocab.txt that has them, else ChatML),
    "chatml" or "chitchat". backward: the folder of a GPT2-chitchat MMI (backward) model with the same vocabulary,
    imported into out/backward for `owngpt chat OUT --mmi N`. Returns the import record (also in out/import.json)."""
    from owngpt.checkpoint.format import save_checkpoint
    from owngpt.checkpoint.meta import make_meta
    from owngpt.export.hf_tokenizer import CHITCHAT, find_tokenizer_files, import_tokenizer

    if chat_format not in ("auto", "chatml", "chitchat"):
        raise OwnGPTError(f"chat format must be auto, chatml or chitchat, not {chat_format!r}")
    folder, out = Path(folder), output_dir(out, create=False)
    cfg = config_from_hf(read_hf_config(folder), str(folder / "config.json"))  # before the tokenizer: "not GPT-2" is the first thing to say
    tok_path = Path(tokenizer) if tokenizer is not None else find_tokenizer_files(folder)
    imported = import_tokenizer(tok_path, lowercase=lowercase)
    tok = imported.tokenizer
    if chat_format == "chatml":
        tok = tok.with_chat_format({"name": "chatml"})
    elif chat_format == "chitchat":
        tok = tok.with_chat_format(CHITCHAT)  # names the tokens it needs when the vocabulary lacks them
    record = {"source": str(folder), "tokenizer": str(tok_path), "tokenizer_files": imported.files,
              "chat_format": tok.chat_format["name"], "new_token_ids": imported.new_ids,
              "vocab_size": tok.vocab_size}
    runs = [(folder, out)] + ([(Path(backward), out / "backward")] if backward is not None else [])
    for src, run in runs:
        model = imported_gpt(src, imported.source_ids, cfg if src == folder else None)
        reverse = run != out
        meta = make_meta(arch=GPT.arch, model_config=asdict(model.cfg), tokenizer=tok,
                         run_config={"import": {**record, "source": str(src)}, "model": asdict(model.cfg),
                                     "chat": {"system_prompt": None, "reverse": reverse}})
        save_checkpoint(run, 0, model.state_dict(), meta, None, tokenizer=tok, best=True, keep_last=1)
        record["parameters" if not reverse else "backward_parameters"] = model.num_params()
    atomic_write_text(out / "import.json", json.dumps({**record, "source_ids": imported.source_ids}) + "\n")
    return record
