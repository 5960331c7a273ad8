"""GGUF export: an owngpt GPT, its tokenizer and its chat template in one file that llama.cpp and Ollama run.

Two layouts, picked by the model's maths (not by the preset's name, so a custom config is judged on what it is):
  gpt2   learned positions, LayerNorm, tanh-GELU, multi-head attention: llama.cpp's `gpt2` architecture (fused
         q/k/v as `attn_qkv`, exactly owngpt's c_attn). A model without biases gets zero biases, which llama.cpp's
         GPT-2 graph requires and which change nothing.
  llama  RoPE, RMSNorm, SwiGLU, no biases, optional grouped-query attention: llama.cpp's `llama` architecture.
         c_attn is split into q/k/v and c_fc into [gate | up]. owngpt rotates the half-split pairs (x[i],
         x[i + hd/2]) like Hugging Face, while GGML's llama rope rotates adjacent pairs (x[2i], x[2i+1]); the q and
         k rows are therefore permuted within each head exactly as llama.cpp's convert_hf_to_gguf.py does
         (`permute_rope`), so the dot products q·k, and so the model, are unchanged.

Weights: 2-D matrices in the chosen dtype (f32, f16, bf16 or q8_0), norms, biases and the position table in f32
(llama.cpp reads 1-D tensors as f32; its converter keeps position embeddings f32 too). q8_0 needs rows whose
length is a multiple of its 32-value block; a matrix that is not falls back to f16, as in llama.cpp's converter.
A tied output head is written once (`token_embd`); llama.cpp reuses it when `output.weight` is absent.

Tokenizer: byte-level BPE only, as tokenizer.ggml.model "gpt2" (tokens in the byte-level alphabet, merges, ids
0..7 CONTROL, extra embedding rows past the tokenizer as UNUSED `[PAD{i}]`), pre-tokenizer "gpt-2". owngpt's
pre-tokenizer is GPT-2's regex with two changes, and llama.cpp knows neither:
  - Han runs are split from other letters ("AI模型" -> "AI", "模型"): BPE never merges across that boundary in
    owngpt's vocabulary, so llama.cpp's bigger pre-token gives the same ids;
  - combining marks stay with their letters (an "e" + U+0301): llama.cpp's "gpt-2" splits the mark off into the
    punctuation branch, so text with combining marks (decomposed accents, Devanagari, Thai vowel signs...) can
    tokenize differently there. Han-script symbols that are not letters (CJK radicals, 〇) can differ likewise.
llama.cpp also matches special tokens inside the rendered chat text, so a user who types "<|im_end|>" gets the
special token there (owngpt encodes it as plain text). The chat template is `chat_template_jinja` (THE chat
format); bos = <|endoftext|> (as GPT-2, never added automatically), eos = <|endoftext|>, eot = <|im_end|>,
padding = <|pad|>.

Not handled: sinusoidal positions (no llama.cpp architecture adds a fixed sine table), LSTM, seq2seq and n-gram
models, LoRA-only checkpoints (merge the adapter first), character and WordPiece tokenizers, k-quants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write
from owngpt.model.gpt import mlp_hidden_size
from owngpt.tokenizer import SPECIAL_TOKENS, Tokenizer, chat_template_jinja

DTYPES = ("f32", "f16", "bf16", "q8_0")
LAYOUTS = ("gpt2", "llama")
Q8_BLOCK = 32  # values per q8_0 block: a row's length must be a multiple of it


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise OwnGPTError("GGUF export needs the `gguf` package: pip install gguf") from None
    return gguf


# ----------------------------------------------------------------------------- which layout


def gguf_layout(cfg: ModelConfig) -> str:
    """'gpt2' or 'llama': the llama.cpp architecture that computes exactly this model; OwnGPTError saying why not."""
    if cfg.pos == "sinusoidal":
        raise OwnGPTError("sinusoidal positions cannot be exported to GGUF: no llama.cpp architecture adds a fixed "
                          "sine table (use pos learned, as preset gpt2, or rope, as preset modern)")
    if cfg.pos == "learned":
        wanted, layout = {"norm": "layernorm", "mlp": "gelu"}, "gpt2"
        if cfg.n_kv_head != cfg.n_head:
            raise OwnGPTError("the GPT-2 layout (learned positions) has no grouped-query attention: this model has "
                              f"n_kv_head={cfg.n_kv_head} < n_head={cfg.n_head}")
        if cfg.head_dim * cfg.n_head != cfg.n_embd:
            raise OwnGPTError(f"the GPT-2 layout derives each head's width from n_embd / n_head, but this model's heads "
                              f"are {cfg.head_dim} wide with n_embd={cfg.n_embd}, n_head={cfg.n_head} (head_size, "
                              "set by `owngpt prune --structured heads`): prune a modern-preset model to export it")
    else:
        wanted, layout = {"norm": "rmsnorm", "mlp": "swiglu", "bias": False}, "llama"
    for key, value in wanted.items():
        if getattr(cfg, key) != value:
            raise OwnGPTError(f"the GGUF {layout} layout (pos={cfg.pos}) needs {key}={value!r}, but this model has "
                              f"{key}={getattr(cfg, key)!r}; llama.cpp has no architecture mixing them")
    return layout


# ----------------------------------------------------------------------------- weights under GGUF names


def permute_rope(w: Tensor, n_head: int) -> Tensor:
    """q or k projection rows (n_head * hd, in) from the half-split rope layout (HF, owngpt) to GGML's adjacent-pair
    layout: within each head, row i and row i + hd/2 become rows 2i and 2i + 1 (convert_hf_to_gguf.py's permute)."""
    out_dim = w.shape[0]
    return w.reshape(n_head, 2, out_dim // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _bias(linear: torch.nn.Linear) -> Tensor:
    """The layer's bias, or zeros where it has none (llama.cpp's GPT-2 graph requires every bias)."""
    return linear.bias if linear.bias is not None else torch.zeros(linear.out_features)


def _norm_bias(norm: torch.nn.Module) -> Tensor:
    return norm.bias if getattr(norm, "bias", None) is not None else torch.zeros_like(norm.weight)


def gpt2_tensors(model: torch.nn.Module) -> dict[str, Tensor]:
    """The weights of a gpt2-layout model under llama.cpp's GPT-2 names ((out, in) matrices, as nn.Linear)."""
    t = model.transformer
    out = {"token_embd.weight": t.wte.weight, "position_embd.weight": t.wpe.weight,
           "output_norm.weight": t.ln_f.weight, "output_norm.bias": _norm_bias(t.ln_f)}
    for i, block in enumerate(t.h):
        b = f"blk.{i}."
        out |= {b + "attn_norm.weight": block.ln_1.weight, b + "attn_norm.bias": _norm_bias(block.ln_1),
                b + "attn_qkv.weight": block.attn.c_attn.weight, b + "attn_qkv.bias": _bias(block.attn.c_attn),
                b + "attn_output.weight": block.attn.c_proj.weight, b + "attn_output.bias": _bias(block.attn.c_proj),
                b + "ffn_norm.weight": block.ln_2.weight, b + "ffn_norm.bias": _norm_bias(block.ln_2),
                b + "ffn_up.weight": block.mlp.c_fc.weight, b + "ffn_up.bias": _bias(block.mlp.c_fc),
                b + "ffn_down.weight": block.mlp.c_proj.weight, b + "ffn_down.bias": _bias(block.mlp.c_proj)}
    return out


def llama_tensors(model: torch.nn.Module) -> dict[str, Tensor]:
    """The weights of a llama-layout model under llama.cpp's Llama names: q/k/v split and rope-permuted, c_fc
    split into gate and up."""
    cfg, t = model.cfg, model.transformer
    hd = cfg.head_dim
    out = {"token_embd.weight": t.wte.weight, "output_norm.weight": t.ln_f.weight}
    for i, block in enumerate(t.h):
        b = f"blk.{i}."
        q, k, v = block.attn.c_attn.weight.split([cfg.n_head * hd, cfg.n_kv_head * hd, cfg.n_kv_head * hd])
        gate, up = block.mlp.c_fc.weight.chunk(2)  # c_fc emits [gate | up]
        out |= {b + "attn_norm.weight": block.ln_1.weight,
                b + "attn_q.weight": permute_rope(q, cfg.n_head), b + "attn_k.weight": permute_rope(k, cfg.n_kv_head),
                b + "attn_v.weight": v, b + "attn_output.weight": block.attn.c_proj.weight,
                b + "ffn_norm.weight": block.ln_2.weight,
                b + "ffn_gate.weight": gate, b + "ffn_up.weight": up, b + "ffn_down.weight": block.mlp.c_proj.weight}
    return out


def _encoded(name: str, tensor: Tensor, dtype: str) -> tuple[np.ndarray, Any]:
    """(data, GGML type) of one tensor: 2-D matrices in `dtype` (q8_0 falling back to f16 for rows that are not
    whole blocks), everything else and the position table in f32."""
    gguf = _gguf()
    Q = gguf.GGMLQuantizationType
    data = tensor.detach().float().cpu().contiguous().numpy()
    qtype = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}[dtype]
    if data.ndim < 2 or name.startswith("position_embd"):
        qtype = Q.F32
    elif qtype == Q.Q8_0 and data.shape[-1] % Q8_BLOCK:
        qtype = Q.F16
    return gguf.quants.quantize(data, qtype), qtype


# ----------------------------------------------------------------------------- tokenizer


def vocab_fields(tok: Tokenizer, n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) for tokenizer.ggml.*: one token per embedding row (rows past the tokenizer's
    vocabulary become UNUSED `[PAD{i}]` tokens, as llama.cpp's converter names them)."""
    gguf = _gguf()
    if tok.kind != "bpe":
        raise OwnGPTError(f"only byte-level BPE tokenizers export to GGUF; this model's tokenizer is {tok.kind!r}, "
                          "which llama.cpp's gpt2 tokenizer cannot reproduce")
    if tok.vocab_size > n_vocab:
        raise OwnGPTError(f"the tokenizer has {tok.vocab_size} tokens but the model only {n_vocab} embedding rows")
    by_id = {i: name for name, i in tok.spec["model"]["vocab"].items()}
    tokens = [by_id[i] for i in range(tok.vocab_size)] + [f"[PAD{i}]" for i in range(tok.vocab_size, n_vocab)]
    T = gguf.TokenType
    types = [int(T.CONTROL if i < len(SPECIAL_TOKENS) else T.NORMAL if i < tok.vocab_size else T.UNUSED)
             for i in range(n_vocab)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok.spec["model"].get("merges", [])]
    return tokens, types, merges


# ----------------------------------------------------------------------------- the file


def _write_metadata(w: Any, layout: str, cfg: ModelConfig, name: str) -> None:
    w.add_name(name)
    w.add_context_length(cfg.block_size)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(mlp_hidden_size(cfg))
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_kv_head)
    w.add_vocab_size(cfg.vocab_size)
    if layout == "gpt2":
        w.add_layer_norm_eps(cfg.norm_eps)
    else:
        w.add_layer_norm_rms_eps(cfg.norm_eps)
        w.add_rope_freq_base(cfg.rope_theta)
        w.add_rope_dimension_count(cfg.head_dim)
        w.add_key_length(cfg.head_dim)  # explicit: a head-pruned model's heads are not n_embd / n_head wide
        w.add_value_length(cfg.head_dim)


def _write_tokenizer(w: Any, tok: Tokenizer, n_vocab: int) -> None:
    tokens, types, merges = vocab_fields(tok, n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")  # the closest llama.cpp knows; see the module docstring for where it differs
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tok.eot_id)  # GPT-2's convention: <|endoftext|> starts and separates documents
    w.add_eos_token_id(tok.eot_id)
    w.add_eot_token_id(tok.im_end_id)  # the end of a chat turn: llama.cpp stops at either
    w.add_pad_token_id(tok.pad_id)
    w.add_add_bos_token(False)  # owngpt never prepends one: a prompt is its text's tokens
    w.add_add_eos_token(False)
    w.add_chat_template(chat_template_jinja(tok))


def _check_target(path: Path, dtype: str) -> None:
    """Refuse a file that cannot be written, or a dtype, before any weights are loaded or converted."""
    if dtype not in DTYPES:
        raise OwnGPTError(f"GGUF dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if path.is_dir():
        raise OwnGPTError(f"{path} is a folder; give the file to write, e.g. {path / 'model.gguf'}")
    if not path.parent.is_dir():
        raise OwnGPTError(f"cannot write {path}: the folder {path.parent} does not exist")


def export_gguf(model: torch.nn.Module, tokenizer: Tokenizer, path: str | Path, dtype: str = "f32",
                name: str = "owngpt") -> dict[str, str]:
    """Write `model` (an owngpt GPT) with `tokenizer` as one GGUF file at `path`; returns {tensor name: GGML type}."""
    gguf = _gguf()
    path = Path(path)
    _check_target(path, dtype)
    arch = getattr(model, "arch", type(model).__name__)
    if arch != "gpt":
        raise OwnGPTError(f"only GPT models export to GGUF; this is a {arch} model, which no llama.cpp "
                          "architecture computes")
    cfg: ModelConfig = model.cfg
    layout = gguf_layout(cfg)
    tensors = gpt2_tensors(model) if layout == "gpt2" else llama_tensors(model)
    if not cfg.tie_embeddings:
        tensors["output.weight"] = model.lm_head.weight
    file_type = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}[dtype]
    types: dict[str, str] = {}

    def write(tmp: Path) -> None:
        w = gguf.GGUFWriter(str(tmp), layout)
        _write_metadata(w, layout, cfg, name)
        w.add_file_type(int(getattr(gguf.LlamaFileType, file_type)))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _write_tokenizer(w, tokenizer, cfg.vocab_size)
        with torch.no_grad():
            for tensor_name, tensor in tensors.items():
                data, qtype = _encoded(tensor_name, tensor, dtype)
                w.add_tensor(tensor_name, data, raw_dtype=qtype)
                types[tensor_name] = qtype.name
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    atomic_write(path, write)
    return types


def export_run_gguf(run: str | Path, path: str | Path, dtype: str = "f32",
                    adapter: str | Path | None = None) -> dict[str, str]:
    """Export a run folder's best (else latest) checkpoint, or a checkpoint folder, to GGUF (see export_gguf); a LoRA
    adapter is merged in first."""
    from owngpt.export.source import load_for_export

    _check_target(Path(path), dtype)
    model, tok = load_for_export(run, "a GGUF file", "export-gguf FILE", adapter)
    return export_gguf(model, tok, path, dtype, name=Path(run).resolve().name)


def open_llama(path: str | Path, n_ctx: int, threads: int = 1) -> Any:
    """A llama-cpp-python `Llama` running the GGUF file at `path` (for checks and benchmarks; quiet)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise OwnGPTError("running a GGUF file needs llama-cpp-python: pip install llama-cpp-python") from None
    # logits_all: llama-cpp-python keeps logits (`scores`) only then; a decode step has one row either way
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, logits_all=True,
                 verbose=False)


def llama_cpp_greedy(llm: Any, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation of `prompt` by an `open_llama` model: the check that an export computes what owngpt
    computes (tests, benchmarks/bench_decode.py). Argmax of the raw logits, no sampler chain, so nothing but the
    model decides."""
    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    for _ in range(max_new_tokens):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        if len(out) < max_new_tokens:
            llm.eval(out[-1:])
    return out
