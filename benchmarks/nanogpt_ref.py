"""The baseline for bench_train.py: nanoGPT's model and training loop, rebuilt to its published structure.

nanoGPT (github.com/karpathy/nanoGPT, model.py + train.py) is the anchor the training issue names: its CPU
"baby GPT" command is

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

What this module keeps from it, because each costs time on a CPU:
  * the model: LayerNorm (F.layer_norm), one c_attn Linear split into q/k/v, SDPA with is_causal=True, exact
    (erf) nn.GELU, dropout modules (p=0), learned positions, tied head, loss computed inside forward over every
    position, and no biases (train.py's default `bias = False`, which the command keeps);
  * the optimizer: AdamW with decay on every >= 2-D tensor (embeddings included), not fused on CPU, which
    makes PyTorch take its per-parameter for-loop implementation;
  * the loop: a fresh np.memmap and torch.randint batch every step, gradient clipping, lr set by hand each
    step, `loss.item()` every step (log_interval=1), estimate_loss on eval_iters train + val batches every
    eval_interval steps, and a torch.save checkpoint whenever validation improves.
What it leaves out: printing, the GradScaler (nanoGPT's is disabled on a CPU), DDP and wandb.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class RefConfig:
    vocab_size: int
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False  # train.py's default, which the baby-GPT command keeps: no biases in Linear and LayerNorm


class LayerNorm(nn.Module):
    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class SelfAttention(nn.Module):
    def __init__(self, cfg: RefConfig):
        super().__init__()
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.dropout = cfg.n_head, cfg.dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0,
                                           is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: RefConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: RefConfig):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.bias)
        self.attn = SelfAttention(cfg)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class RefGPT(nn.Module):
    def __init__(self, cfg: RefConfig):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=LayerNorm(cfg.n_embd, cfg.bias),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        # nanoGPT returns only the last position's logits when there are no targets (an inference shortcut);
        # here every position's, so the benchmark's shared evaluator can score windows with it.
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                                           ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay: float, lr: float, betas: tuple[float, float]):
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused = next(self.parameters()).is_cuda  # nanoGPT fuses only on CUDA
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **({"fused": True} if fused else {}))


@dataclass
class RefTrain:
    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337


def get_lr(it: int, t: RefTrain) -> float:
    if it < t.warmup_iters:
        return t.lr * (it + 1) / (t.warmup_iters + 1)
    if it > t.lr_decay_iters:
        return t.min_lr
    ratio = (it - t.warmup_iters) / (t.lr_decay_iters - t.warmup_iters)
    return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (t.lr - t.min_lr)


def train_reference(data_dir: Path, model_cfg: RefConfig, t: RefTrain, out_dir: Path) -> dict:
    """nanoGPT's train.py on a CPU: returns wall time, each training step's seconds, the model and a val-loss curve.

    `data_dir` holds train.bin / val.bin (uint16 token ids), as nanoGPT's prepare scripts write them.
    """
    torch.manual_seed(t.seed)
    B, T = t.batch_size, model_cfg.block_size

    def get_batch(split: str):
        data = np.memmap(os.path.join(data_dir, f"{split}.bin"), dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy(data[i : i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + T].astype(np.int64)) for i in ix])
        return x, y

    model = RefGPT(model_cfg)
    optimizer = model.configure_optimizers(t.weight_decay, t.lr, (t.beta1, t.beta2))

    @torch.no_grad()
    def estimate_loss():
        out = {}
        model.eval()
        for split in ("train", "val"):
            losses = torch.zeros(t.eval_iters)
            for k in range(t.eval_iters):
                _, loss = model(*get_batch(split))
                losses[k] = loss.item()
            out[split] = losses.mean().item()
        model.train()
        return out

    out_dir.mkdir(parents=True, exist_ok=True)
    curve, best_val, step_times = [], 1e9, []
    t0 = time.perf_counter()
    X, Y = get_batch("train")
    it = 0
    while True:
        lr = get_lr(it, t)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if it % t.eval_interval == 0:
            losses = estimate_loss()
            curve.append((time.perf_counter() - t0, it, losses["val"]))
            if losses["val"] < best_val:
                best_val = losses["val"]
                if it > 0:
                    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter_num": it,
                                "best_val_loss": best_val}, out_dir / "ckpt.pt")
        ts = time.perf_counter()
        _, loss = model(X, Y)
        X, Y = get_batch("train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # log_interval=1
        step_times.append(time.perf_counter() - ts)
        it += 1
        if it > t.max_iters:
            break
    wall = time.perf_counter() - t0
    return {"wall": wall, "step_times": step_times, "tokens_per_step": B * T, "model": model, "curve": curve}


def train_reference_cuda(data_path: Path, model_cfg: RefConfig, batch_size: int, grad_accum: int, steps: int,
                         log_interval: int = 10, compile_model: bool = True, device: str = "cuda") -> dict:
    """nanoGPT's train.py on a GPU (its GPT-2 recipe's code path): bf16 autocast, torch.compile of the model with
    its loss, fused AdamW, the next batch fetched to pinned memory while the GPU works, gradient clipping, and
    one `loss.item()` per `log_interval` steps. Fixed lr (throughput only). Returns the seconds of each
    `log_interval`-step window (synchronised at the window's end) and the tokens per step."""
    device = torch.device(device)  # "cpu" only to dry-run the benchmark script
    torch.manual_seed(1337)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    T = model_cfg.block_size
    data = np.memmap(data_path, dtype=np.uint16, mode="r")

    def get_batch():
        ix = torch.randint(len(data) - T, (batch_size,))
        x = torch.stack([torch.from_numpy(data[i : i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + T].astype(np.int64)) for i in ix])
        if device.type == "cpu":
            return x, y
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)

    model = RefGPT(model_cfg).to(device)
    optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95))
    if compile_model:
        model = torch.compile(model)
    ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    X, Y = get_batch()
    windows, t_window = [], time.perf_counter()
    for it in range(1, steps + 1):
        for _ in range(grad_accum):
            with ctx:
                _, loss = model(X, Y)
                loss = loss / grad_accum
            X, Y = get_batch()
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if it % log_interval == 0:
            loss.item()  # the host sync nanoGPT takes when it logs (it also waits for the GPU)
            now = time.perf_counter()
            windows.append(now - t_window)
            t_window = now
    return {"windows": windows, "tokens_per_step": batch_size * T * grad_accum, "log_interval": log_interval}
