"""A tiny model with GPT-2's Linear names, for the LoRA module and adapter-folder tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from owngpt.model.lora import LoRAConfig


# ----------------------------------------------------------------------------- a tiny model with GPT-2's Linear names


@dataclass
class TinyConfig:
    vocab_size: int = 32
    n_embd: int = 16
    n_layer: int = 2
    tie: bool = True


class TinyAttn(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.c_attn(x).chunk(3, dim=-1)  # 3 x (B, T, d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y)


class TinyMLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class TinyBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(d), TinyAttn(d), nn.LayerNorm(d), TinyMLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            h=nn.ModuleList(TinyBlock(cfg.n_embd) for _ in range(cfg.n_layer)),
            ln_f=nn.LayerNorm(cfg.n_embd),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie:
            self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def tiny(seed: int = 0, **kw) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(TinyConfig(**kw)).eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 32, (2, 7), generator=torch.Generator().manual_seed(seed))


def perturb(model: nn.Module, seed: int = 3) -> None:
    """Stand-in for training: random non-zero A and B."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


CFG = LoRAConfig(rank=4, alpha=8.0, dropout=0.0)
