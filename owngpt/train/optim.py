"""The optimizers (AdamW; or Muon for the hidden matrices with AdamW for the rest) and the learning-rate schedule.

Weight decay pulls weights toward zero; that regularises the big matrices of attention and MLP, but on
norm gains, biases and embeddings it only hurts (a decayed norm gain fights the normalisation, a decayed
embedding shrinks rare tokens' rows), so those go into a second group with weight_decay 0 — as nanoGPT,
nanochat and litgpt do. `train.embed_lr_scale` other than 1 moves the embedding tables into a third group at that
multiple of the rate (a row only learns in steps whose batch holds its token; tiny-cpu uses 30x).

Muon (`train.optimizer: muon`, PyTorch's own `torch.optim.Muon`) orthogonalises the momentum of each hidden 2-D
weight matrix (attention and MLP projections, LoRA's A and B) before applying it, as nanochat and modded-nanogpt
do; embeddings, the output head, norm gains and biases stay with AdamW. Its update is scaled per matrix to the
size of AdamW's (Moonshot's `match_rms_adamw`), so it takes the same learning rate and schedule as AdamW
(`train.muon_lr_scale` multiplies it, `train.muon_lr` replaces it). Every group carries `lr_scale`, its learning
rate relative to train.lr, so the loop sets one schedule for all.

Not handled: Muon's distributed (sharded) variant, and fused or on-device step skipping with Muon (the host
decides, as for any unfused optimizer).
"""

from __future__ import annotations

import contextlib
import math
import sys

import torch
from torch import nn

from owngpt.config import TrainConfig
from owngpt.errors import OwnGPTError


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


def param_groups(model: nn.Module, weight_decay: float, embed_lr_scale: float = 1.0) -> list[dict]:
    """Two AdamW groups: decay on >= 2-D weights that are not embeddings or norms; no decay on the rest. With
    `embed_lr_scale` other than 1 the embedding tables (nn.Embedding: tokens, learned positions) get a third group
    of their own, undecayed, at that multiple of the learning rate (`lr_scale`); with the default the groups are
    the two of every earlier run, so their checkpoints resume.

    Only parameters with requires_grad take part (LoRA freezes the base). A tied weight (wte == lm_head)
    appears once, under the embedding's name, so it is not decayed, and it takes the embedding's rate.
    """
    skip = _no_decay_names(model)
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} if embed_lr_scale != 1 else set()
    decay, no_decay, embeddings = [], [], []
    for name, p in model.named_parameters():  # named_parameters() yields a shared tensor only once
        if not p.requires_grad:
            continue
        if id(p) in tables:
            embeddings.append(p)
        else:
            (decay if p.dim() >= 2 and name not in skip else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0},
              {"params": embeddings, "weight_decay": 0.0, "lr_scale": embed_lr_scale}]
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


def _adamw(groups: list[dict], cfg: TrainConfig, fused: bool | None) -> torch.optim.AdamW:
    device = groups[0]["params"][0].device
    if fused is None:
        fused = _fused_works(device)
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    for g in groups:
        g.setdefault("lr_scale", 1.0)
    if fused:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    return torch.optim.AdamW(groups, foreach=True, **kwargs)


def muon_names(model: nn.Module) -> set[str]:
    """The parameters Muon takes: trainable 2-D matrices that are not embeddings, norms or the output head."""
    skip = _no_decay_names(model)
    head = {id(m.weight) for n, m in model.named_modules() if n.endswith("lm_head") and hasattr(m, "weight")}
    return {name for name, p in model.named_parameters()
            if p.requires_grad and p.dim() == 2 and name not in skip and id(p) not in head}


GRAM_MAX_STEPS = 5  # torch.optim.Muon's default ns_steps, the one owngpt uses (see _orthogonalize_fp32)


def _orthogonalize_fp32(grad: torch.Tensor, ns_coefficients: tuple[float, float, float], ns_steps: int,
                        eps: float) -> torch.Tensor:
    """Muon's quintic Newton-Schulz orthogonalisation (the iteration torch.optim.Muon runs), computed in fp32: on the
    matrix itself when it is near square, through its Gram matrix (`_gram_newton_schulz`) when one side is more than
    1.5x the other, where that takes fewer operations. The Gram form never recomputes A from X, so its rounding
    grows with the steps: at torch's 5 steps it stays within ~3e-5 of the direct form (far inside the bf16 rounding
    of torch's own iteration), at 8 steps ~1e-3, and at 10 it diverges; so it is used for up to GRAM_MAX_STEPS."""
    x = grad.float()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T  # (n, m), n <= m
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    n, m = x.shape
    iterate = _gram_newton_schulz if 2 * m > 3 * n and ns_steps <= GRAM_MAX_STEPS else _newton_schulz
    x = iterate(x, ns_coefficients, ns_steps)
    return x.T if tall else x


def _newton_schulz(x: torch.Tensor, ns_coefficients: tuple[float, float, float], ns_steps: int) -> torch.Tensor:
    """X <- (a I + b A + c A^2) X with A = X X^T, `ns_steps` times: per step 2 n^2 m + n^3 multiply-adds for an
    (n, m) X."""
    a, b, c = ns_coefficients
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x


def _gram_newton_schulz(x: torch.Tensor, ns_coefficients: tuple[float, float, float], ns_steps: int) -> torch.Tensor:
    """The same iteration carried on (n, n) matrices: with P = a I + b A + c A^2, a polynomial in A (so symmetric,
    and commuting with A), X' = P X gives A' = X' X'^T = P A P. So X_k = Q_k X_0 with Q' = P Q, and X_0 is multiplied
    only twice (A_0 = X_0 X_0^T, and Q_K X_0 at the end): 2 n^2 m + (4 ns_steps - 3) n^3 multiply-adds against
    ns_steps (2 n^2 m + n^3). For an (n, 6n) matrix (tiny-cpu's fused SwiGLU input) that is 29 n^3 against 65 n^3."""
    a, b, c = ns_coefficients
    gram = x @ x.T  # A_0
    eye = torch.eye(gram.size(0), dtype=gram.dtype, device=gram.device)
    q = None
    for step in range(ns_steps):
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c).add_(eye, alpha=a)  # P = a I + b A + c A^2
        q = poly if q is None else poly @ q
        if step < ns_steps - 1:
            gram = poly @ gram @ poly  # A' = P A P
    return x if q is None else q @ x


@contextlib.contextmanager
def _muon_precision(device: torch.device):
    """torch.optim.Muon orthogonalises in bf16; a CPU without native bf16 (no AMX, no avx512_bf16) emulates bf16
    matmuls ~10x slower than fp32 (660 tiny-cpu steps took 711 s instead of 91 s), so there its iteration runs in
    fp32 — the same steps, more precise. Elsewhere (GPUs, CPUs with native bf16) torch's own runs untouched."""
    from owngpt.runtime import cpu_has_bf16_matmul

    impl = sys.modules.get("torch.optim._muon")
    if device.type != "cpu" or cpu_has_bf16_matmul() or not hasattr(impl, "_zeropower_via_newtonschulz"):
        yield
        return
    original = impl._zeropower_via_newtonschulz
    impl._zeropower_via_newtonschulz = _orthogonalize_fp32
    try:
        yield
    finally:
        impl._zeropower_via_newtonschulz = original


class MuonWithAdamW:
    """Muon on the hidden matrices and AdamW on the rest (none for LoRA, whose weights are all matrices), stepped as
    one optimizer: the loop sees their param_groups together (each with `lr_scale`), one state_dict, one step."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.AdamW | None) -> None:
        self.muon, self.adamw = muon, adamw
        self.parts = [o for o in (muon, adamw) if o is not None]
        self.defaults: dict = {}  # not fused: a non-finite step is skipped by the host

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.parts for g in o.param_groups]

    @property
    def state(self) -> dict:
        return {k: v for o in self.parts for k, v in o.state.items()}

    def step(self, closure=None) -> None:
        with _muon_precision(self.muon.param_groups[0]["params"][0].device):
            self.muon.step()
        if self.adamw is not None:
            self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict() if self.adamw else None}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"muon", "adamw"}:
            raise OwnGPTError("the checkpoint's optimizer state is AdamW's, but this run uses train.optimizer=muon: "
                              "resume with train.optimizer=adamw, or start a new run (another --out, or "
                              "train.init_from=CHECKPOINT) with Muon")
        self.muon.load_state_dict(state["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state["adamw"])


def make_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool | None = None):
    """The run's optimizer: AdamW over `param_groups(model)` (fused when the device supports it, else foreach), or
    with train.optimizer=muon, Muon over `muon_names(model)` and AdamW over the rest. lr is set per step (each
    group's schedule value times its `lr_scale`)."""
    if cfg.optimizer == "adamw":
        groups = param_groups(model, cfg.weight_decay, cfg.embed_lr_scale)
        if not groups:
            raise ValueError("the model has no trainable parameters")
        return _adamw(groups, cfg, fused)
    chosen = muon_names(model)
    matrices = [p for n, p in model.named_parameters() if n in chosen]
    if not matrices:
        raise OwnGPTError("train.optimizer=muon found no hidden weight matrix to train; use train.optimizer=adamw")
    muon_lr = cfg.muon_lr or cfg.lr * cfg.muon_lr_scale
    muon = torch.optim.Muon([{"params": matrices, "lr_scale": muon_lr / cfg.lr if cfg.lr else 1.0}], lr=muon_lr,
                           weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum, nesterov=True,
                           adjust_lr_fn="match_rms_adamw")
    taken = {id(p) for p in matrices}
    rest = [dict(g, params=[p for p in g["params"] if id(p) not in taken])
            for g in param_groups(model, cfg.weight_decay, cfg.embed_lr_scale)]
    rest = [g for g in rest if g["params"]]
    return MuonWithAdamW(muon, _adamw(rest, cfg, fused=False) if rest else None)


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
