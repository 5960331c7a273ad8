"""The checkpoint folder: layout, writing it so it survives a crash at any moment, finding, verifying and loading it.

Layout: `RUN/checkpoints/step_0001000/` (the last K kept) and `RUN/best/`, each holding
  model.safetensors   the weights (only what `weights_filter` selected, e.g. LoRA adapters)
  train_state.pt      optimizer, RNG and loader states; plain tensors/dicts/lists/ints, so it loads with
                      torch.load(weights_only=True) — no pickled code ever runs
  tokenizer/          a copy of the run's tokenizer, so a checkpoint is self-contained
  meta.json           the typed CheckpointMeta (owngpt/checkpoint/meta.py): arch, model config, tokenizer hash,
                      step, tokens, val loss, sha256 of every file — written LAST: a folder without meta.json is
                      an unfinished write and is never used

A checkpoint is written into a temp folder next to its final place, every file fsynced, then renamed
(rename within one file system is atomic), then the parent folder is fsynced so the rename itself persists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from owngpt.checkpoint.meta import FORMAT, CheckpointMeta
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write, atomic_write_text, file_sha256, fsync_dir, fsync_tree, publish_dir
from owngpt.runtime import resolve_device

_STEP_RE = re.compile(r"^step_(\d{7,})$")


# ----------------------------------------------------------------------------- file helpers


def is_complete(folder: Path) -> bool:
    """A checkpoint counts only once its meta.json (the last file written) exists."""
    return (Path(folder) / "meta.json").is_file() and (Path(folder) / "model.safetensors").is_file()


# ----------------------------------------------------------------------------- save


def _dedup_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses tensors that share memory (tied wte/lm_head): keep one name, record the others as aliases."""
    seen: dict[tuple, str] = {}
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, t in state.items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        out[name] = t.detach().to("cpu").contiguous()
    return out, aliases


def _check_finite(state: dict[str, torch.Tensor]) -> None:
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise OwnGPTError(f"refusing to save a checkpoint: weight {name!r} holds NaN or inf (training diverged; "
                              "lower train.lr or resume from the previous checkpoint)")


def _write_folder(tmp: Path, state: dict[str, torch.Tensor], meta: CheckpointMeta, train_state: dict | None,
                  tokenizer) -> None:
    tmp.mkdir(parents=True)
    weights, aliases = _dedup_shared(state)
    atomic_write(tmp / "model.safetensors", lambda t: save_file(weights, str(t), metadata={"format": "pt"}))
    files = {}
    if train_state is not None:
        atomic_write(tmp / "train_state.pt", lambda t: torch.save(train_state, t))
        files["train_state.pt"] = file_sha256(tmp / "train_state.pt")
    if tokenizer is not None:
        tokenizer.save(tmp / "tokenizer")
    meta = replace(meta, format=FORMAT, sha256=file_sha256(tmp / "model.safetensors"), files=files, tied=aliases)
    fsync_tree(tmp)  # everything but meta.json is durable before the marker appears
    atomic_write_text(tmp / "meta.json", json.dumps(meta.to_dict(), indent=2, ensure_ascii=False, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in meta.json")


_OLD_RE = re.compile(r"^\.old-(.+)-\d+$")


def _clean_stale_temps(folder: Path) -> None:
    """Tidy what a killed process left: temp folders (never complete, never used) are removed; a folder that
    publish_dir had moved aside but not yet replaced (killed between its two renames) is put back."""
    if folder.is_dir():
        for p in folder.iterdir():
            if not p.is_dir():
                continue
            old = _OLD_RE.match(p.name)
            if old and not (folder / old.group(1)).exists():
                os.replace(p, folder / old.group(1))
                fsync_dir(folder)
            elif old or p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


def _link_or_copy_tree(src: Path, dst: Path) -> None:
    """Hard links (no extra disk) where the file system allows, else copies."""
    for dirpath, _dirs, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.link(Path(dirpath) / name, dst / rel / name)
            except OSError:
                shutil.copy2(Path(dirpath) / name, dst / rel / name)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    meta: CheckpointMeta,
    train_state: dict | None,
    tokenizer=None,
    best: bool = False,
    keep_last: int = 2,
) -> Path:
    """Write RUN/checkpoints/step_XXXXXXX atomically, keep the newest `keep_last`; with best=True also make
    RUN/best a copy of it (hard links). Returns the step folder. Non-finite weights raise instead of saving."""
    run_dir = Path(run_dir)
    _check_finite(model_state)
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(ckpt_root)
    _clean_stale_temps(run_dir)
    final = ckpt_root / f"step_{step:07d}"
    tmp = ckpt_root / f".tmp-{final.name}-{os.getpid()}"
    _write_folder(tmp, model_state, replace(meta, step=int(step)), train_state, tokenizer)
    if best:  # best/ first: a step folder, once published, says best/ holds its step (a resume trusts that)
        tmp_best = run_dir / f".tmp-best-{os.getpid()}"
        _link_or_copy_tree(tmp, tmp_best)
        fsync_dir(tmp_best)
        publish_dir(tmp_best, run_dir / "best")
    publish_dir(tmp, final)
    _prune(ckpt_root, max(1, keep_last))
    return final


def _prune(ckpt_root: Path, keep_last: int) -> None:
    steps = list_checkpoints(ckpt_root.parent)
    for old in steps[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- find


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete step checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name) and is_complete(p)]
    return sorted(found, key=lambda p: int(_STEP_RE.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Newest complete step checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def best_or_latest(path: str | Path) -> Path:
    """A checkpoint folder as given, or a run folder's best (else latest) checkpoint."""
    path = Path(path)
    if is_complete(path):
        return path
    if is_complete(path / "best"):
        return path / "best"
    latest = latest_checkpoint(path)
    if latest is None:
        raise OwnGPTError(f"{path} holds no complete checkpoint (expected {path}/best or {path}/checkpoints/step_*/meta.json)")
    return latest


def _same_weights(a: Path, b: Path) -> bool:
    """Whether two checkpoint folders share one weights file (best/ is hard-linked to its step folder)."""
    try:
        return os.path.samefile(a / "model.safetensors", b / "model.safetensors")
    except OSError:
        return False


def _previous_of(path: Path) -> str:
    """What to do when `path` is corrupt, for the error message: use the previous checkpoint (named), or, where
    there is none, train again."""
    run_dir = path.parent.parent if _STEP_RE.match(path.name) else path.parent
    step = int(_STEP_RE.match(path.name).group(1)) if _STEP_RE.match(path.name) else None
    others = [p for p in list_checkpoints(run_dir) if p.resolve() != path.resolve() and not _same_weights(p, path)]
    if step is not None:
        others = [p for p in others if int(_STEP_RE.match(p.name).group(1)) < step]
    if not others:
        return "there is no earlier checkpoint to fall back to: train again into a new --out"
    return f"use the previous one: {others[-1]}"


# ----------------------------------------------------------------------------- load


def read_meta(path: str | Path) -> CheckpointMeta:
    """The meta of a checkpoint folder (any written so far: those before `arch` existed hold a GPT)."""
    path = Path(path)
    if not is_complete(path):
        raise OwnGPTError(f"{path} is not a complete checkpoint (no meta.json or model.safetensors)")
    try:
        data = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OwnGPTError(f"checkpoint {path} is corrupt (unreadable meta.json); {_previous_of(path)}") from None
    return CheckpointMeta.from_dict(data, path / "meta.json")


def _verify(path: Path, file: str, expected: str | None) -> None:
    if expected and file_sha256(path / file) != expected:
        raise OwnGPTError(f"checkpoint {path} is corrupt (sha256 mismatch in {file}); {_previous_of(path)}")


def load_weights(path: str | Path, meta: CheckpointMeta | None = None) -> dict[str, torch.Tensor]:
    """Verified weights of a checkpoint folder, tied aliases restored."""
    path = Path(path)
    meta = meta or read_meta(path)
    _verify(path, "model.safetensors", meta.sha256)
    state = load_file(str(path / "model.safetensors"))
    for alias, name in meta.tied.items():
        state[alias] = state[name]
    return state


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta, dict | None]:
    """(weights, meta, train_state) of a checkpoint folder, after checking every sha256 in meta."""
    path = Path(path)
    meta = read_meta(path)
    state = load_weights(path, meta)
    train_state = None
    if (path / "train_state.pt").exists():
        _verify(path, "train_state.pt", meta.files.get("train_state.pt"))
        train_state = torch.load(path / "train_state.pt", map_location="cpu", weights_only=True)
    return state, meta, train_state


def require_full_model(ckpt: Path, meta: CheckpointMeta) -> None:
    """Refuse a checkpoint that holds only part of a model (a LoRA run's adapters) where a whole one is needed."""
    if meta.weights_filtered:
        raise OwnGPTError(f"{ckpt} holds only part of a model (e.g. LoRA adapters); load its base model and apply "
                          "the adapter (see `owngpt chat BASE --adapter ADAPTER`)")


def load_model(path: str | Path, device: str | torch.device = "auto", tokenizer=None):
    """(model, meta, Tokenizer | None) from a run folder (its best, else latest) or a checkpoint folder, on
    `device` ("auto": CUDA, else MPS, else CPU), in eval mode. The model is of the checkpoint's `arch`.

    `tokenizer`: a Tokenizer you want to use instead of the checkpoint's copy; it must be the same one
    the model was trained with (same hash)."""
    from owngpt.model.registry import build

    ckpt = best_or_latest(path)
    meta = read_meta(ckpt)
    require_full_model(ckpt, meta)
    state = load_weights(ckpt, meta)
    model = build(meta.arch, meta.model_config)
    model.load_state_dict(state, strict=True)
    model.to(resolve_device(device)).eval()
    expected = meta.tokenizer_hash
    if tokenizer is not None:
        if expected and tokenizer.hash != expected:
            raise OwnGPTError(f"tokenizer mismatch: the given tokenizer has hash {tokenizer.hash} but {ckpt} was "
                              f"trained with tokenizer {expected}; use the tokenizer saved in {ckpt}/tokenizer")
        return model, meta, tokenizer
    tok = None
    if (ckpt / "tokenizer").is_dir():
        from owngpt.tokenizer import Tokenizer

        tok = Tokenizer.load(ckpt / "tokenizer")
        if expected and tok.hash != expected:
            raise OwnGPTError(f"{ckpt}/tokenizer (hash {tok.hash}) is not the tokenizer the model was trained with "
                              f"({expected}): the checkpoint was changed or damaged; {_previous_of(ckpt)}")
    return model, meta, tok
