"""The decoder-only Transformer (GPT), one file top to bottom: norms, attention, MLP, block, model (KV cache: kv_cache.py).

One class covers two families, picked by `ModelConfig.preset` and its per-feature switches:
  gpt2    learned positions, LayerNorm (eps 1e-5), tanh-GELU MLP, biases, tied embeddings: GPT-2's exact maths,
          so Hugging Face GPT-2 weights load by a name mapping (owngpt/export/hf.py);
  modern  rotary positions (RoPE), RMSNorm, SwiGLU MLP, no biases, optional grouped-query attention.
Sinusoidal positions ("Attention Is All You Need") are a third choice; unlike that paper we do not scale the
token embeddings by sqrt(n_embd), because our embeddings are initialised (and tied) GPT-2 style.

Parameter names follow GPT-2 (transformer.wte/wpe/h.{i}.ln_1/attn.c_attn/attn.c_proj/ln_2/mlp.c_fc/mlp.c_proj/
ln_f, lm_head). `forward` always returns logits; the loss belongs to the caller.

Left padding: batched prompts of unequal length are left-padded and described by `valid` (True on real
tokens). A token's position is the number of real tokens before it, and no query attends to a padding key,
so a padded row computes exactly what the same prompt alone would. The KV cache remembers the mask, so later
decode steps keep the right positions and masks without being told again.

Not handled: sliding-window attention, positions beyond block_size (no RoPE scaling), mixture-of-experts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.model.kv_cache import KVCache

# SDPA broadcasts grouped k/v heads itself from torch 2.5 (enable_gqa); older versions get repeated heads.
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)

# ----------------------------------------------------------------------------- leaf modules


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight — LayerNorm without centring or bias (LLaMA's norm)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the mean of squares in fp32 (bf16 would lose the small variations); F.rms_norm is PyTorch's one kernel
        # for x * rsqrt(mean(x^2) + eps), the same numbers as those ops written out and ~20% faster on a CPU
        return F.rms_norm(x.float(), (x.size(-1),), None, self.eps).type_as(x) * self.weight


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.n_embd, cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


_GELU_K = 2 * math.sqrt(2 / math.pi)


def _gelu_gate(x: torch.Tensor) -> torch.Tensor:
    """sigmoid(2z), z = sqrt(2/pi) * (x + 0.044715 x^3): the factor of GPT-2's tanh GELU that multiplies x."""
    return torch.sigmoid((x * x).mul_(0.044715 * _GELU_K).add_(_GELU_K).mul_(x))


class _TanhGELU(torch.autograd.Function):
    """GPT-2's tanh GELU written as x * sigmoid(2z) (the same function: 0.5 * (1 + tanh(z)) == sigmoid(2z)). Why:
    PyTorch's CPU tanh-GELU kernels are ~2x slower forward+backward than these few vectorised ops, ~15% of a small
    model's training step. GPUs, and torch.compile (which fuses F.gelu itself), use F.gelu."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        s = _gelu_gate(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, s = ctx.saved_tensors
        # d/dx [x * s] = s + x * s * (1 - s) * d(2z)/dx,  d(2z)/dx = K * (1 + 3 * 0.044715 x^2)
        d = (x * x).mul_(3 * 0.044715 * _GELU_K).add_(_GELU_K).mul_(x).mul_(s).mul_(1 - s).add_(s)
        return d.mul_(grad)


# PyTorch's own CPU tanh-GELU is slow only on AVX2 (measured ~2x the ops above); with AVX-512 it is faster.
_SLOW_CPU_GELU = torch.backends.cpu.get_cpu_capability() == "AVX2"


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    if (x.device.type == "cpu" and x.dtype == torch.float32 and _SLOW_CPU_GELU
            and not torch.compiler.is_compiling()):  # compiled, F.gelu fuses with its neighbours
        if not torch.is_grad_enabled():  # decoding: the same ops without autograd.Function's per-call cost
            return _gelu_gate(x).mul_(x)
        return _TanhGELU.apply(x)
    return F.gelu(x, approximate="tanh")


def mlp_hidden_size(cfg: ModelConfig) -> int:
    """4 * n_embd for GELU; for SwiGLU ~8/3 * n_embd (same parameter count with its extra matrix), rounded
    up to a multiple of 64 for efficient matmuls."""
    if cfg.mlp_hidden is not None:
        return cfg.mlp_hidden
    if cfg.mlp == "swiglu":
        return -(-int(8 * cfg.n_embd / 3) // 64) * 64
    return 4 * cfg.n_embd


def rope_table(block_size: int, head_dim: int, theta: float) -> torch.Tensor:
    """The rotation for every position, (block_size, 2 * head_dim): [cos | cos | -sin | sin], each head_dim/2 wide,
    the signed, doubled layout apply_rope multiplies by (so no per-forward work rebuilds it).

    Computed once, in fp32, and looked up by position at every forward. Computing them inside the forward
    costs more than it seems: torch.compile fuses the pow/cos/sin into every layer's rotation and recomputes
    them per element, ~a quarter of a 124M model's GPU step (measured on an H100)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hd/2,)
    angles = torch.arange(block_size, dtype=torch.float32)[:, None] * inv_freq  # (T, hd/2)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos, -sin, sin], dim=-1)


def rope_lookup(table: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotation for `positions` (T,) or (B, T) as (cos, signed sin), each (B|1, 1, T, hd) to broadcast over
    heads: cos = [cos | cos] and sin = [-sin | sin] (rope_table's layout), so that apply_rope is two products and
    one sum."""
    rows = table[positions]  # (T, 2hd) or (B, T, 2hd)
    if rows.dim() == 2:
        rows = rows[None]
    cos, sin = rows[:, None].to(dtype).chunk(2, dim=-1)
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[i], x[i + hd/2]) by the position's angle: the half-split convention of LLaMA/HF,
    (x1 cos - x2 sin, x2 cos + x1 sin) computed as x * cos + [x2 | x1] * [-sin | sin] (fewer ops than
    rotating each half apart: ~15% faster forward and backward on a CPU)."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hd/2) each
    return x * cos + torch.cat((x2, x1), dim=-1) * sin  # (B, nh, T, hd)


def sinusoidal_table(block_size: int, n_embd: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))  ("Attention Is All You Need")."""
    pos = torch.arange(block_size, dtype=torch.float32)[:, None]  # (T, 1)
    div = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))  # (C/2,)
    pe = torch.zeros(block_size, n_embd)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : n_embd // 2]
    return pe  # (T, C)


# ----------------------------------------------------------------------------- the Transformer


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query) causal self-attention with one fused q/k/v projection."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.rope = cfg.pos == "rope"
        self.dropout = cfg.dropout
        # q has n_head heads, k and v n_kv_head each (fewer with GQA: a smaller KV cache)
        self.c_attn = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                mask: torch.Tensor | None, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, T, _ = x.shape
        hd = self.head_dim
        q, k, v = self.c_attn(x).split([self.n_head * hd, self.n_kv_head * hd, self.n_kv_head * hd], dim=2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = v.view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, nkv, T, hd)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            start, end = cache.pos, cache.pos + T
            cache.k[layer][:, :, start:end] = k
            cache.v[layer][:, :, start:end] = v
            k, v = cache.k[layer][:, :, :end], cache.v[layer][:, :, :end]  # (B, nkv, T_past+T, hd)
        # mask None: plain causal, or (cache, one new token) the token sees every stored one
        is_causal = T > 1 and mask is None and (cache is None or cache.pos == 0)  # T first: a bool when compiled
        # GQA: each group of n_head/n_kv_head consecutive query heads shares one k/v head
        gqa = {}
        if self.n_kv_head != self.n_head:
            if _SDPA_GQA:
                gqa["enable_gqa"] = True
            else:
                rep = self.n_head // self.n_kv_head
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # (B, nh, S, hd)
        out_dtype = v.dtype
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # CPU autocast: SDPA's bf16 backward on a CPU is ~4.7x slower than fp32 even counting these casts;
            # attention is a small share of the FLOPs, so it runs in fp32 and the projections keep bf16's matmuls.
            q, k, v = q.float(), k.float(), v.float()
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                                   dropout_p=self.dropout if self.training else 0.0, **gqa)
            y = y.to(out_dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                               dropout_p=self.dropout if self.training else 0.0, **gqa)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * hd)  # (B, nh, T, hd) -> (B, T, nh*hd): heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """GELU (tanh approximation, as GPT-2) or SwiGLU; for SwiGLU c_fc emits [gate | up] in one matmul."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = mlp_hidden_size(cfg)
        self.swiglu = cfg.mlp == "swiglu"
        self.c_fc = nn.Linear(cfg.n_embd, 2 * hidden if self.swiglu else hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, hidden) or (B, T, 2*hidden)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up  # (B, T, hidden)
        else:
            h = gelu_tanh(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, rope, mask, cache, layer: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only Transformer language model configured by ModelConfig; forward returns logits."""

    arch = "gpt"  # its name in checkpoints (owngpt/model/registry.py)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        parts = dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer)),
            ln_f=make_norm(cfg),
        )
        if cfg.pos == "learned":
            parts["wpe"] = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.transformer = nn.ModuleDict(parts)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix reads tokens in and writes them out
        for name, table in self._position_tables().items():
            self.register_buffer(name, table, persistent=False)
        self.apply(self._init_weights)
        # GPT-2's scaled init: each residual branch's output projection shrinks with depth, so the residual
        # stream's variance does not grow with the number of layers (2 branches per layer).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def _position_tables(self) -> dict[str, torch.Tensor]:
        """The fixed (not learned) position table of this config, in fp32: a buffer outside the state dict,
        rebuilt from the config."""
        c = self.cfg
        if c.pos == "sinusoidal":
            return {"pe": sinusoidal_table(c.block_size, c.n_embd)}
        if c.pos == "rope":
            return {"rope": rope_table(c.block_size, c.head_dim, c.rope_theta)}
        return {}

    def _apply(self, fn, recurse: bool = True):
        """After every move or cast (to, half, bfloat16, to_empty, ...) the fixed position tables are rebuilt in
        fp32 on their new device: a cast would have rounded them (a bf16 round trip would lose digits) and
        to_empty() after a meta-device build leaves them uninitialised. They are small: block_size rows."""
        super()._apply(fn, recurse)
        for name, table in self._position_tables().items():
            device = getattr(self, name).device
            if device.type != "meta":
                setattr(self, name, table.to(device))
        return self

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ forward

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size) for token ids `idx` (B, T).

        cache: a KVCache from new_cache(); idx then holds the tokens after the cache.pos stored ones, and
               the cache is advanced by T.
        valid: (B, T_past + T) bool (or (B, T) for the new tokens only), False on left padding.
        """
        B, T = idx.shape
        past = cache.pos if cache is not None else 0
        self._check_length(past + T, cache)
        positions, mask = self._positions_and_mask(idx, past, cache, valid)
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.cfg.pos == "learned":
            x = x + self.transformer.wpe(positions)  # positions (T,) or (B, T)
        elif self.cfg.pos == "sinusoidal":
            x = x + self.pe[positions].to(x.dtype)
        rope = rope_lookup(self.rope, positions, x.dtype) if self.cfg.pos == "rope" else None
        x = self.transformer.drop(x)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, rope, mask, cache, layer)
        if cache is not None:
            cache.pos += T
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, V)

    def _check_length(self, total: int, cache: KVCache | None) -> None:
        if total > self.cfg.block_size:
            raise OwnGPTError(f"the input of {total} tokens is longer than the model's context of "
                              f"{self.cfg.block_size} tokens; shorten the prompt (or truncate it on the left)")
        if cache is not None and total > cache.max_len:
            raise OwnGPTError(f"the input of {total} tokens does not fit the KV cache of {cache.max_len} tokens; "
                              "make the cache with a larger max_len")

    def _positions_and_mask(self, idx: torch.Tensor, past: int, cache: KVCache | None,
                            valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Positions (T,) or (B, T) of the new tokens, and the attention mask (B, 1, T, past+T) or None
        when the fast paths (is_causal, or a single token that may see the whole cache) are exact."""
        B, T = idx.shape
        total = past + T
        if valid is not None:
            valid = valid.to(device=idx.device, dtype=torch.bool)
            if valid.shape == (B, T) and past > 0:  # only the new tokens' part was given
                valid = torch.cat([cache.valid[:, :past], valid], dim=1)
            if valid.shape != (B, total):
                raise ValueError(f"valid has shape {tuple(valid.shape)}, expected {(B, total)} (cached + new tokens)")
            if bool(valid.all()):
                valid = None if cache is None or not cache.padded else valid
        if cache is not None:
            if valid is not None:
                cache.valid[:, :total] = valid
                cache.padded = bool((~valid).any())
            else:
                cache.valid[:, past:total] = True
            if cache.padded:
                valid = cache.valid[:, :total]
        q_at = torch.arange(past, total, device=idx.device)  # (T,) absolute query positions
        if valid is None and (past == 0 or T == 1):
            return q_at, None  # plain causal (is_causal), or one new token that sees every stored one
        k_at = torch.arange(total, device=idx.device)[None, :]  # (1, S)
        causal = k_at <= q_at[:, None]  # (T, S): is_causal would align the corners wrongly when past > 0
        if valid is None:
            return q_at, causal[None, None]  # (1, 1, T, S)
        positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)[:, past:]  # (B, T): real tokens before each
        # every query also sees itself, so a padding query has one key and its (ignored) output stays finite
        mask = (causal[None] & valid[:, None, :]) | (k_at == q_at[:, None])[None]  # (B, T, S)
        return positions, mask[:, None]  # (B, 1, T, S): broadcast over heads

    # ------------------------------------------------------------------ helpers

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for `batch_size` rows and up to `max_len` tokens (default: the context size)."""
        max_len = self.cfg.block_size if max_len is None else max_len
        if max_len > self.cfg.block_size:
            raise OwnGPTError(f"a KV cache of {max_len} tokens is longer than the model's context of "
                              f"{self.cfg.block_size} tokens")
        w = self.transformer.wte.weight
        return KVCache(self.cfg.n_layer, batch_size, self.cfg.n_kv_head, max_len, self.cfg.head_dim, w.dtype, w.device)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, a tied matrix counted once; non_embedding leaves out wte and wpe (lookup tables)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward) at full context: 6N + 12·L·H·Q·T (PaLM appendix B,
        as nanoGPT). N counts the weights that multiply activations: everything but the lookup tables,
        plus the output head (which with tied embeddings is wte itself)."""
        c = self.cfg
        n = self.num_params(non_embedding=True) + (c.vocab_size * c.n_embd if c.tie_embeddings else 0)
        return 6 * n + 12 * c.n_layer * c.n_head * c.head_dim * c.block_size

    def describe(self) -> str:
        """One line, e.g. 'GPT gpt2: 0.80M params, 4 layers, 128 wide, 4 heads, ctx 64, 5.2 MFLOPs/token'."""
        c = self.cfg
        heads = f"{c.n_head} heads" + (f" ({c.n_kv_head} kv)" if c.n_kv_head != c.n_head else "")
        flops = self.flops_per_token()
        unit, scale = next(((u, s) for u, s in (("G", 1e9), ("M", 1e6), ("K", 1e3)) if flops >= s), ("", 1))
        return (f"GPT {c.preset}: {self.num_params() / 1e6:.2f}M params, {c.n_layer} layers, {c.n_embd} wide, "
                f"{heads}, ctx {c.block_size}, {flops / scale:.1f} {unit}FLOPs/token")
