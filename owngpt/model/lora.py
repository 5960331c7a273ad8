"""LoRA modules applied from outside the model: wrap chosen nn.Linear layers, train only a low-rank update, and
merge it back into plain weights. Adapter folders (files on disk) are owngpt/checkpoint/adapter.py's.

A wrapped layer computes  y = x W^T + b + dropout(x) A^T B^T * (alpha / rank)  with W, b frozen,
A (rank, in) Kaiming-uniform and B (out, rank) zero, so a fresh adapter changes nothing.
`LoRALinear` keeps the base layer's own `weight` / `bias` Parameters under their original names, so a
wrapped model still loads a base state dict, and merging restores the base's exact parameter names.

Not handled: models other than the GPT (the LSTM and seq2seq baselines are refused), Embedding/Conv layers,
quantized bases, several adapters stacked on one layer, and LoRA on a layer whose weight is tied to another (GPT's
lm_head with tied embeddings): merging it would also change the embeddings, so `apply_lora` refuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from owngpt.errors import OwnGPTError


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
    the wrapped layer names. Afterwards only `lora_` parameters require grad. The baselines (LSTM, seq2seq) are
    refused: LoRA is for the GPT."""
    arch = getattr(model, "arch", None)
    if arch not in (None, "gpt"):
        raise OwnGPTError(f"LoRA adapters are made for GPT models, and this is a {arch} model: fine-tune it fully "
                          "(without --lora)")
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
        # in the mode of the layer it wraps: adapters put on a model in eval mode (loaded for chat) must not start
        # with dropout on, since generation leaves a model already in eval mode alone (generate/runner.py)
        setattr(parent, child, LoRALinear(linear, cfg.rank, cfg.alpha, cfg.dropout).train(linear.training))
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
