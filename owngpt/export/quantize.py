"""`owngpt quantize`: a GPT run made smaller for CPU inference — int8 (its own checkpoint kind, arch "gpt-int8",
owngpt/model/quantized.py) or bf16 weights (a plain GPT checkpoint stored in bf16).

Both load through owngpt.checkpoint.format.load_model, so generate, chat, eval and serve use them unchanged.
int8 refuses training (Int8GPT.trainable is False). A bf16 checkpoint is a GPT whose weights were rounded to bf16:
it loads in fp32 where the CPU lacks native bf16 (`--dtype auto`), and in bf16, at half the bytes per token, where
it has them (avx512_bf16 / AMX).

Not handled: quantizing the LSTM, seq2seq or n-gram baselines, quantizing twice, LoRA adapter folders (merge first).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from owngpt.checkpoint.meta import CheckpointMeta, make_meta
from owngpt.errors import OwnGPTError
from owngpt.io import output_dir
from owngpt.model.gpt import GPT
from owngpt.model.quantized import INT8_METHODS, Int8Config, Int8GPT, int8_targets, quantize_per_channel
from owngpt.model.registry import arch_of, config_dict

METHODS = (*INT8_METHODS, "bf16")
QUANTIZED_KEY = "quantized"  # the run_config section a quantized checkpoint records how it was made in


def quantized_method(meta: CheckpointMeta) -> str | None:
    """How a checkpoint was quantized (int8-weight, int8-dynamic, bf16), or None for full precision."""
    if meta.arch == Int8GPT.arch:
        return meta.model_config.get("method", "int8")
    return meta.recorded(QUANTIZED_KEY).get("method")


def check_quantizable(meta: CheckpointMeta, where: str | Path, verb: str = "quantize") -> None:
    """Refuse, in one line, a checkpoint this verb cannot compress: quantized already, not a GPT, or adapters only."""
    done = quantized_method(meta)
    if done:
        raise OwnGPTError(f"{where} is already quantized ({done}); {verb} the full-precision run it was made from "
                          "(rounding twice only adds error)")
    if meta.weights_filtered:
        raise OwnGPTError(f"{where} holds only LoRA adapters, not a whole model; merge them into their base first "
                          "(`owngpt lora merge --base BASE --adapter ADAPTER --out MERGED`), then "
                          f"{verb} MERGED")
    if (meta.arch or "gpt") != GPT.arch:
        why = {"ngram": "it holds counts, not weight matrices",
               "lstm": "its recurrent cells are not the Linear layers this handles",
               "seq2seq": "its encoder-decoder layout is not handled yet"}.get(meta.arch, "only GPTs are handled")
        raise OwnGPTError(f"{where} holds a {meta.arch} model, and {verb} works on GPT checkpoints: {why}")


def quantize_model(model: GPT, method: str, head: bool = False) -> torch.nn.Module:
    """An inference copy of `model`: Int8GPT for the int8 methods (block Linears, and lm_head when `head`, become
    int8 per-channel), or a bf16 GPT for "bf16". `model` itself is left as it was."""
    if method not in METHODS:
        raise OwnGPTError(f"unknown quantization method {method!r}: choose {', '.join(METHODS)}")
    if isinstance(model, Int8GPT):
        raise OwnGPTError("this model is int8 already; quantize the full-precision model it was made from")
    if method == "bf16":
        return _copy(model).to(torch.bfloat16).eval()
    out = Int8GPT(Int8Config(**asdict(model.cfg), method=method, head=head)).to(_device(model))
    state = dict(model.state_dict())
    for name, _linear in int8_targets(model, head):
        # scales from the fp32 weights (a bf16 model's are exact in fp32 too)
        state[f"{name}.weight"], state[f"{name}.scale"] = quantize_per_channel(state[f"{name}.weight"])
    out.load_state_dict(state, strict=True)
    return out.eval()


def _copy(model: GPT) -> GPT:
    twin = GPT(model.cfg).to(_device(model))
    twin.load_state_dict(model.state_dict())
    return twin


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def quantize_run(source: str | Path, out: str | Path, method: str = "int8-weight", head: bool = False) -> dict[str, Any]:
    """`owngpt quantize`: the GPT checkpoint `source` (a run folder: its best, else latest) quantized into the new run
    folder `out` (checkpoints/step_N and best/, tokenizer included). Returns {path, method, bytes_before, bytes_after}."""
    from owngpt.checkpoint.format import best_or_latest, load_model, read_meta, save_checkpoint

    if method not in METHODS:
        raise OwnGPTError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    ckpt = best_or_latest(source)
    meta = read_meta(ckpt)
    check_quantizable(meta, source)
    out_path = output_dir(out, create=False)  # a file or a non-empty folder there: one line, before any work
    model, meta, tok = load_model(ckpt, device="cpu")
    quantized = quantize_model(model, method, head)
    record = {"method": method, "head": head if method != "bf16" else None, "source": str(ckpt),
              "source_sha256": meta.sha256}
    new_meta = make_meta(arch=arch_of(quantized), model_config=config_dict(quantized), tokenizer=tok,
                         run_config={**meta.run_config, QUANTIZED_KEY: record}, tokens=meta.tokens,
                         val_loss=None, best_val_loss=None)
    saved = save_checkpoint(out_path, meta.step, quantized.state_dict(), new_meta, None, tokenizer=tok, best=True,
                            keep_last=1)
    return {"path": str(out_path), "method": method, "bytes_before": (ckpt / "model.safetensors").stat().st_size,
            "bytes_after": (saved / "model.safetensors").stat().st_size}
