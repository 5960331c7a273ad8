"""LoRA adapter folders: a small file of low-rank updates tied to the base checkpoint it was trained on.

Adapter folder (written by `write_adapter` / `save_adapter`, durably: each file temp + fsync + rename):
  adapter.safetensors   only the `*.lora_A` / `*.lora_B` tensors
  adapter.json          LoRA settings, wrapped layers, the base model config and base checkpoint identity
                        (weights sha256, tokenizer hash, step), sha256 of adapter.safetensors — written last:
                        its presence marks a complete adapter

The modules themselves (LoRALinear, apply_lora, merge_lora) are owngpt/model/lora.py's.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from owngpt.checkpoint.format import best_or_latest, load_checkpoint, load_model, read_meta, save_checkpoint
from owngpt.checkpoint.meta import CheckpointMeta, merged_meta
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write, atomic_write_text, file_sha256, output_dir
from owngpt.model.lora import LoRAConfig, load_lora, lora_state_dict, merge_lora

ADAPTER_FORMAT = 1
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_META = "adapter.json"
ADAPTER_DIR = "adapter"  # RUN/adapter of `owngpt sft --lora`


def _base_identity(base_meta: CheckpointMeta | None) -> dict[str, Any]:
    meta = base_meta or CheckpointMeta()
    return {
        "model_config": meta.model_config or None,
        "sha256": meta.sha256,  # sha256 of the base checkpoint's model.safetensors
        "tokenizer_hash": meta.tokenizer_hash,
        "step": meta.step if base_meta is not None else None,
    }


def write_adapter(directory: str | Path, state: dict[str, torch.Tensor], cfg: LoRAConfig,
                  base_meta: CheckpointMeta | None) -> Path:
    """Write adapter.safetensors (the `lora_` tensors of `state`) and adapter.json (settings + base identity)."""
    directory = Path(directory)
    lora = {k: v.detach().to("cpu").contiguous() for k, v in state.items() if "lora_" in k}
    if not lora:
        raise OwnGPTError("no LoRA tensors to save: the state holds no '*.lora_A' / '*.lora_B' weights")
    output_dir(directory)
    atomic_write(directory / ADAPTER_WEIGHTS, lambda tmp: save_file(lora, str(tmp), metadata={"format": "pt"}))
    info = {
        "format": ADAPTER_FORMAT,
        "lora": asdict(cfg),
        "modules": sorted({k.rsplit(".", 1)[0] for k in lora}),
        "base": _base_identity(base_meta),
        "sha256": file_sha256(directory / ADAPTER_WEIGHTS),
    }
    atomic_write_text(directory / ADAPTER_META, json.dumps(info, indent=2, ensure_ascii=False))  # last: the marker
    return directory


def save_adapter(directory: str | Path, model: nn.Module, cfg: LoRAConfig, base_meta: CheckpointMeta | None) -> Path:
    """Save a LoRA-wrapped model's adapters (see write_adapter); `base_meta` is the base checkpoint's meta."""
    return write_adapter(directory, lora_state_dict(model), cfg, base_meta)


def export_adapter(run_dir: str | Path, cfg: LoRAConfig, base_meta: CheckpointMeta) -> Path:
    """Turn a LoRA run's best (else latest) checkpoint into a standalone adapter folder: RUN/adapter."""
    state, _meta, _ = load_checkpoint(best_or_latest(run_dir))
    return write_adapter(Path(run_dir) / ADAPTER_DIR, state, cfg, base_meta)


def read_adapter(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, adapter.json contents) of an adapter folder, after checking the weights' sha256."""
    directory = Path(directory)
    meta_path, weights_path = directory / ADAPTER_META, directory / ADAPTER_WEIGHTS
    if not meta_path.is_file() or not weights_path.is_file():
        raise OwnGPTError(f"{directory} is not an adapter folder (expected {ADAPTER_META} and {ADAPTER_WEIGHTS}, "
                          "written by `owngpt sft --lora` into RUN/adapter)")
    try:
        info = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OwnGPTError(f"{meta_path}: unreadable JSON ({e})") from None
    if not isinstance(info, dict) or "lora" not in info:
        raise OwnGPTError(f"{meta_path}: missing the 'lora' section")
    if info.get("format") != ADAPTER_FORMAT:
        raise OwnGPTError(f"{meta_path}: adapter format {info.get('format')!r} is not supported (expected {ADAPTER_FORMAT})")
    if info.get("sha256") and file_sha256(weights_path) != info["sha256"]:
        raise OwnGPTError(f"{weights_path} is corrupt (sha256 differs from {ADAPTER_META}); export the adapter again")
    return load_file(str(weights_path)), info


def _check_base(directory: Path, info: dict[str, Any], model: nn.Module, base_meta: CheckpointMeta | None) -> None:
    base = info.get("base") or {}
    recorded = base.get("model_config")
    cfg = getattr(model, "cfg", None)
    if recorded and cfg is not None and hasattr(cfg, "__dataclass_fields__"):
        current = asdict(cfg)
        # dropout does not shape the weights; an adapter recorded before `arch` existed was made on a GPT
        ignored = {"dropout"} | ({"arch"} - set(recorded))
        for key in sorted((set(recorded) | set(current)) - ignored):
            if recorded.get(key) != current.get(key):
                raise OwnGPTError(f"adapter {directory} was trained on a base model with {key}={recorded.get(key)!r}, "
                                  f"but this model has {key}={current.get(key)!r}; use the base checkpoint it was trained on")
    if base_meta is not None:
        for key, what in (("sha256", "weights sha256"), ("tokenizer_hash", "tokenizer hash")):
            want, have = base.get(key), getattr(base_meta, key)
            if want and have and want != have:
                raise OwnGPTError(f"adapter {directory} was trained on a base checkpoint with {what} {want[:12]}… "
                                  f"(step {base.get('step')}), but this base has {have[:12]}… (step "
                                  f"{base_meta.step}); use the base checkpoint it was trained on")


def load_adapter(directory: str | Path, model: nn.Module, base_meta: CheckpointMeta | None = None) -> LoRAConfig:
    """Apply the adapter in `directory` to `model` in place and return its LoRAConfig.

    Refuses an adapter made for another base: a different model config, a different base checkpoint
    (when `base_meta`, the base checkpoint's meta, is given), or tensors whose names/shapes do not fit."""
    directory = Path(directory)
    return _apply_adapter(directory, *read_adapter(directory), model, base_meta)


def _apply_adapter(directory: Path, state: dict[str, torch.Tensor], info: dict[str, Any], model: nn.Module,
                   base_meta: CheckpointMeta | None) -> LoRAConfig:
    try:
        cfg = LoRAConfig(**info["lora"])
    except TypeError as e:
        raise OwnGPTError(f"{directory / ADAPTER_META}: bad 'lora' section ({e})") from None
    _check_base(directory, info, model, base_meta)
    load_lora(model, state, cfg, where=f"adapter {directory}")
    return cfg


def merge_adapter_into_checkpoint(base_ckpt: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Load a base checkpoint, apply and merge an adapter, and save a plain checkpoint run folder at `out_dir`
    (loadable by load_model / `owngpt chat OUT`). Returns the written checkpoint folder (OUT/best)."""
    out_dir = output_dir(out_dir, create=False)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OwnGPTError(f"{out_dir} already exists and is not empty; choose a new folder for the merged model")
    state, info = read_adapter(adapter_dir)  # a wrong adapter path fails before the (slow) base load
    model, meta, tok = load_model(base_ckpt, device="cpu")
    cfg = _apply_adapter(Path(adapter_dir), state, info, model, meta)
    merge_lora(model)
    merged = merged_meta(meta, {"adapter": str(adapter_dir), "adapter_sha256": info.get("sha256"), "lora": asdict(cfg),
                                "base": str(base_ckpt), "base_sha256": meta.sha256})
    save_checkpoint(out_dir, meta.step, model.state_dict(), merged, None, tokenizer=tok, best=True, keep_last=1)
    return out_dir / "best"


def adapter_run_meta(adapter: str | Path) -> CheckpointMeta | None:
    """The meta of the `owngpt sft --lora` run whose RUN/adapter folder this is (its chat defaults), or None."""
    try:
        return read_meta(best_or_latest(Path(adapter).parent))
    except OwnGPTError:
        return None
