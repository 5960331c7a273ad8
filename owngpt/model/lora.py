"""LoRA adapters applied from outside the model: wrap chosen nn.Linear layers, train only a low-rank update,
save it as a small file tied to its base checkpoint, and merge it back into plain weights.

A wrapped layer computes  y = x W^T + b + dropout(x) A^T B^T * (alpha / rank)  with W, b frozen,
A (rank, in) Kaiming-uniform and B (out, rank) zero, so a fresh adapter changes nothing.
`LoRALinear` keeps the base layer's own `weight` / `bias` Parameters under their original names, so a
wrapped model still loads a base state dict, and merging restores the base's exact parameter names.

Adapter folder (written by `write_adapter` / `save_adapter`):
  adapter.safetensors   only the `*.lora_A` / `*.lora_B` tensors
  adapter.json          LoRA settings, wrapped layers, the base model config and base checkpoint identity
                        (weights sha256, tokenizer hash, step), sha256 of adapter.safetensors

Not handled: Embedding/Conv layers, quantized bases, several adapters stacked on one layer, and LoRA on a
layer whose weight is tied to another (GPT's lm_head with tied embeddings): merging it would also change
the embeddings, so `apply_lora` refuses it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from owngpt.errors import OwnGPTError
from owngpt.io import file_sha256

ADAPTER_FORMAT = 1
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_META = "adapter.json"


@dataclass
class LoRAConfig:
    """Which Linear layers get adapters (name suffixes) and how big/strong the adapters are."""

    rank: int = 8
    alpha: float = 16.0  # the update is scaled by alpha / rank, so changing rank keeps its size comparable
    dropout: float = 0.05  # on the adapter's input only; the frozen path sees the clean input
    targets: list[str] = field(default_factory=lambda: ["c_attn", "c_proj", "c_fc"])

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise OwnGPTError(f"LoRA rank must be a positive integer, not {self.rank!r}")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            raise OwnGPTError(f"LoRA alpha must be a positive number, not {self.alpha!r}")
        self.alpha = float(self.alpha)
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise OwnGPTError(f"LoRA dropout must be in [0, 1), not {self.dropout!r}")
        self.dropout = float(self.dropout)
        if isinstance(self.targets, str):
            self.targets = [t.strip() for t in self.targets.split(",") if t.strip()]
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise OwnGPTError(f"LoRA targets must be a non-empty list of layer names such as 'c_attn', not {self.targets!r}")
        self.targets = list(self.targets)

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update B @ A (parameters named lora_A / lora_B)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.scaling = rank, float(alpha), float(alpha) / rank
        # The base layer's own Parameters, re-registered under the same names (…c_attn.weight, …c_attn.bias).
        self.weight = base.weight
        self.register_parameter("bias", base.bias)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        kw = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **kw))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **kw))  # (out, r): zero = no change at start
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init, as in the LoRA paper's code
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)  # (..., out)
        # Two thin matmuls (in → r → out) instead of materialising the (out, in) update.
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., out)
        return out + update * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The dense update this adapter adds to W: B @ A * scaling, shape (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear holding W + B @ A * scaling, reusing this layer's weight/bias Parameters."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        with torch.no_grad():
            self.weight.add_(self.delta_weight().to(self.weight.dtype))
        linear.weight = self.weight
        linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, alpha={self.alpha}"


# ----------------------------------------------------------------------------- apply / inspect


def _matches(name: str, targets: list[str]) -> bool:
    """'c_proj' matches attn.c_proj and mlp.c_proj; 'attn.c_proj' only the attention one."""
    return any(name == t or name.endswith("." + t) for t in targets)


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def _targeted(model: nn.Module, cfg: LoRAConfig) -> list[tuple[str, nn.Linear]]:
    """The Linear layers `cfg.targets` selects; an error listing the available names when there are none."""
    if has_lora(model):
        raise OwnGPTError("this model already has LoRA adapters; merge_lora() them (or load a fresh base) first")
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and _matches(n, cfg.targets)]
    if not found:
        names = _linear_names(model)
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
        shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
        raise OwnGPTError(f"no Linear layer matches the LoRA targets {cfg.targets}; this model's Linear layers are "
                          f"{shown or 'none'} (use a suffix such as {', '.join(suffixes) or '-'})")
    return found


def _tied_names(model: nn.Module) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(n)
    return names


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Replace the targeted nn.Linear layers by LoRALinear in place, freeze every base parameter, and return
    the wrapped layer names. Afterwards only `lora_` parameters require grad."""
    found = _targeted(model, cfg)
    tied = _tied_names(model)
    for name, linear in found:
        shared = [n for n in tied[id(linear.weight)] if n != f"{name}.weight"]
        if shared:
            raise OwnGPTError(f"cannot put LoRA on {name}: its weight is tied to {shared[0]} (tie_embeddings), so "
                              f"merging would change that too; drop {name.rsplit('.', 1)[-1]!r} from the LoRA targets")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, linear in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(linear, cfg.rank, cfg.alpha, cfg.dropout))
    return [name for name, _ in found]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors (names containing 'lora_'), detached."""
    return {k: v.detach() for k, v in model.state_dict().items() if "lora_" in k}


def _expected_shapes(model: nn.Module, cfg: LoRAConfig) -> dict[str, tuple[int, ...]]:
    if has_lora(model):
        return {k: tuple(v.shape) for k, v in lora_state_dict(model).items()}
    shapes: dict[str, tuple[int, ...]] = {}
    for name, linear in _targeted(model, cfg):
        shapes[f"{name}.lora_A"] = (cfg.rank, linear.in_features)
        shapes[f"{name}.lora_B"] = (linear.out_features, cfg.rank)
    return shapes


def check_adapter_fits(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], where: str = "adapter") -> None:
    """Refuse an adapter whose keys or shapes differ from what the model needs, naming the first mismatch."""
    problems: list[str] = []
    for key in sorted(expected):
        if key not in state:
            problems.append(f"it has no tensor {key!r} (the model needs shape {tuple(expected[key])})")
        elif tuple(state[key].shape) != tuple(expected[key]):
            problems.append(f"tensor {key!r} has shape {tuple(state[key].shape)} but the model needs "
                            f"{tuple(expected[key])}")
    for key in sorted(set(state) - set(expected)):
        problems.append(f"it has tensor {key!r} (shape {tuple(state[key].shape)}) that this model has no place for")
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise OwnGPTError(f"{where} does not fit this base model: {problems[0]}{more}; it was made for a different "
                          "base model or LoRA settings (rank, targets)")


def load_lora(model: nn.Module, state: dict[str, torch.Tensor], cfg: LoRAConfig, where: str = "adapter") -> list[str]:
    """Put adapter tensors into `model` (applying LoRA first if needed) after checking every key and shape.
    The model is left untouched when the adapter does not fit. Returns the wrapped layer names."""
    check_adapter_fits(_expected_shapes(model, cfg), state, where)
    if not has_lora(model):
        apply_lora(model, cfg)
    with torch.no_grad():
        for key, value in state.items():
            param = model.get_parameter(key)
            param.copy_(value.to(device=param.device, dtype=param.dtype))
    return [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (W += B @ A * alpha / rank) and put plain nn.Linear layers back,
    so the model has exactly the base's parameter names. Parameters stay frozen (requires_grad False)."""
    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not wrapped:
        raise OwnGPTError("this model has no LoRA adapters to merge")
    for name, layer in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.to_linear())
    return model


# ----------------------------------------------------------------------------- adapter folders


def _base_identity(base_meta: dict | None) -> dict[str, Any]:
    meta = base_meta or {}
    return {
        "model_config": meta.get("model_config"),
        "sha256": meta.get("sha256"),  # sha256 of the base checkpoint's model.safetensors
        "tokenizer_hash": meta.get("tokenizer_hash"),
        "step": meta.get("step"),
    }


def write_adapter(directory: str | Path, state: dict[str, torch.Tensor], cfg: LoRAConfig, base_meta: dict | None) -> Path:
    """Write adapter.safetensors (the `lora_` tensors of `state`) and adapter.json (settings + base identity)."""
    directory = Path(directory)
    lora = {k: v.detach().to("cpu").contiguous() for k, v in state.items() if "lora_" in k}
    if not lora:
        raise OwnGPTError("no LoRA tensors to save: the state holds no '*.lora_A' / '*.lora_B' weights")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{ADAPTER_WEIGHTS}.tmp-{os.getpid()}"
    save_file(lora, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / ADAPTER_WEIGHTS)
    info = {
        "format": ADAPTER_FORMAT,
        "lora": asdict(cfg),
        "modules": sorted({k.rsplit(".", 1)[0] for k in lora}),
        "base": _base_identity(base_meta),
        "sha256": file_sha256(directory / ADAPTER_WEIGHTS),
    }
    tmp = directory / f".{ADAPTER_META}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, directory / ADAPTER_META)  # written last: its presence marks a complete adapter
    return directory


def save_adapter(directory: str | Path, model: nn.Module, cfg: LoRAConfig, base_meta: dict | None) -> Path:
    """Save a LoRA-wrapped model's adapters (see write_adapter); `base_meta` is the base checkpoint's meta."""
    return write_adapter(directory, lora_state_dict(model), cfg, base_meta)


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


def _check_base(directory: Path, info: dict[str, Any], model: nn.Module, base_meta: dict | None) -> None:
    base = info.get("base") or {}
    recorded = base.get("model_config")
    cfg = getattr(model, "cfg", None)
    if recorded and cfg is not None and hasattr(cfg, "__dataclass_fields__"):
        current = asdict(cfg)
        for key in sorted((set(recorded) | set(current)) - {"dropout"}):  # dropout does not shape the weights
            if recorded.get(key) != current.get(key):
                raise OwnGPTError(f"adapter {directory} was trained on a base model with {key}={recorded.get(key)!r}, "
                                  f"but this model has {key}={current.get(key)!r}; use the base checkpoint it was trained on")
    if base_meta:
        for key, what in (("sha256", "weights sha256"), ("tokenizer_hash", "tokenizer hash")):
            want, have = base.get(key), base_meta.get(key)
            if want and have and want != have:
                raise OwnGPTError(f"adapter {directory} was trained on a base checkpoint with {what} {want[:12]}… "
                                  f"(step {base.get('step')}), but this base has {have[:12]}… (step "
                                  f"{base_meta.get('step')}); use the base checkpoint it was trained on")


def load_adapter(directory: str | Path, model: nn.Module, base_meta: dict | None = None) -> LoRAConfig:
    """Apply the adapter in `directory` to `model` in place and return its LoRAConfig.

    Refuses an adapter made for another base: a different model config, a different base checkpoint
    (when `base_meta`, the base checkpoint's meta, is given), or tensors whose names/shapes do not fit."""
    directory = Path(directory)
    return _apply_adapter(directory, *read_adapter(directory), model, base_meta)


def _apply_adapter(directory: Path, state: dict[str, torch.Tensor], info: dict[str, Any], model: nn.Module,
                   base_meta: dict | None) -> LoRAConfig:
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
    from owngpt.train.checkpoint import load_model, save_checkpoint

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OwnGPTError(f"{out_dir} already exists and is not empty; choose a new folder for the merged model")
    state, info = read_adapter(adapter_dir)  # a wrong adapter path fails before the (slow) base load
    model, meta, tok = load_model(base_ckpt, device="cpu")
    cfg = _apply_adapter(Path(adapter_dir), state, info, model, meta)
    merge_lora(model)
    # The base's own hashes and losses do not describe the merged weights; save_checkpoint writes new hashes.
    dropped = ("sha256", "files", "tied", "format", "step", "val_loss", "best_val_loss")
    kept = {k: v for k, v in meta.items() if k not in dropped}
    merged_meta = dict(kept, weights_filtered=False, merged_adapter={
        "adapter": str(adapter_dir), "adapter_sha256": info.get("sha256"), "lora": asdict(cfg),
        "base": str(base_ckpt), "base_sha256": meta.get("sha256"),
    })
    save_checkpoint(out_dir, int(meta.get("step") or 0), model.state_dict(), merged_meta, None, tokenizer=tok,
                    best=True, keep_last=1)
    return out_dir / "best"
