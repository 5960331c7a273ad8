"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedule (warmup + decay).

Weight decay pulls weights toward zero; that regularises the big matrices of attention and MLP, but on
norm gains, biases and embeddings it only hurts (a decayed norm gain fights the normalisation, a decayed
embedding shrinks rare tokens' rows), so those go into a second group with weight_decay 0 — as nanoGPT,
nanochat and litgpt do.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from owngpt.config import TrainConfig


def _no_decay_names(model: nn.Module) -> set[str]:
    """Names of parameters owned by embeddings or norm layers (whatever their rank)."""
    names: set[str] = set()
    for mod_name, mod in model.named_modules():
        is_embedding = isinstance(mod, nn.Embedding)
        is_norm = isinstance(mod, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)) or "norm" in type(mod).__name__.lower()
        if is_embedding or is_norm:
            for p_name, _ in mod.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decay on >= 2-D weights that are not embeddings or norms; no decay on the rest.

    Only parameters with requires_grad take part (LoRA freezes the base). A tied weight (wte == lm_head)
    appears once, under the embedding's name, so it is not decayed.
    """
    skip = _no_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # named_parameters() yields a shared tensor only once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and name not in skip else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _fused_works(device: torch.device) -> bool:
    """Fused AdamW is one kernel per step instead of a dozen; exists on CUDA and (torch >= 2.4) CPU."""
    try:
        p = nn.Parameter(torch.zeros(2, device=device))
        p.grad = torch.ones_like(p)
        torch.optim.AdamW([p], lr=1e-3, fused=True).step()
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def make_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over `param_groups(model)`; fused when the device supports it (else foreach). lr is set per step."""
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    device = groups[0]["params"][0].device
    if fused is None:
        fused = _fused_works(device)
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    if fused:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    return torch.optim.AdamW(groups, foreach=True, **kwargs)


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup from 0, then cosine/linear decay
    from cfg.lr to cfg.min_lr reached at `total_steps` (held after), or constant."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.decay == "constant" or total_steps <= cfg.warmup_steps:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / (total_steps - cfg.warmup_steps))
    if cfg.decay == "linear":
        return cfg.lr + (cfg.min_lr - cfg.lr) * progress
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)
