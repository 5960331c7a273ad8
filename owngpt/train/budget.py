"""A budget in minutes, planned on the machine at hand (`owngpt quickstart --minutes N`).

Fine-tuning gets a fixed number of steps, whatever the machine: the persona's identity chats are a share of every
batch, so the steps, not the minutes, decide whether the model learns its name (1,255 steps named it in 80% of
answers, 1,400 in 84%; the 581 steps a slower CPU reached in the same 5 minutes, in 58%). Pretraining gets the rest of the
budget, and the model is sized to it:

    1. probe   time a few training steps of the pretraining and the fine-tuning shapes (random tokens, ~5 s)
    2. size    every candidate model, smallest first: the tiny-cpu recipe (the floor, measured best at the
               quickstart's budget), then depth 3, 4, ... by the depth rule (n_layer = depth, n_embd = 64 * depth,
               heads of 64, lr scaled by width^-1/2 from tiny-cpu's); its throughput scaled from the probe by
               training FLOPs per token; fine-tuning time = steps x tokens per step / that throughput (x SFT_OVERHEAD
               for its validation and checkpoints); pretraining
               time = what is left; the largest candidate whose pretraining sees TOKENS_PER_PARAM tokens per
               parameter (Chinchilla's 20; parameters other than the embedding table) wins
    data       repeated text is worth less than new text: the model is sized to at most SIZE_EPOCHS passes over
               the training split, and pretraining stops after MAX_EPOCHS passes (Muennighoff et al. 2023, "Scaling
               Data-Constrained Language Models": up to ~4 epochs are worth almost as much as new data, past ~16
               almost nothing). On a fast device (a GPU) with a small corpus the run then ends before its budget
               instead of training the same text hundreds of times; the plan says so
    3. floor   pretraining never sees fewer than MIN_PRETRAIN_TOKENS tokens (in steps of the run's batch): a
               base trained less does not hold its persona even after the fine-tuning steps. When the budget
               cannot pay for both on this machine, the plan says so before any training and how long the run
               will take instead (more than asked)
    4. warn    when the probe is slower than the README's reference machine

The plan is written beside the run, so that running the same command again continues the same plan instead of
probing a machine busy with something else.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F

from owngpt.config import RunConfig
from owngpt.runtime import autocast, configure, resolve_device

TOKENS_PER_PARAM = 20
# Muon's steps/s over AdamW's at the quickstart's shape in the probe below (the two alternated in one process, 5
# rounds of 25 steps: 0.92 with the direct Newton-Schulz, 0.929-0.944 since its Gram form, 2026-12-06). fit()'s own
# 4-minute runs gave ~0.82 before the Gram form (bench_recipes.py): the probe leaves out part of Muon's cost in fit().
MUON_STEP_RATE = 0.94
# Pretraining tokens/s of the probe at the quickstart's shape (tiny-cpu, context 256, batch 8, vocab 4096) on the
# machine the README's quickstart figures come from (AMD EPYC, 2 cores, AVX2, fp32): 11,595 with AdamW
# (docs/benchmarks.md), times MUON_STEP_RATE for tiny-cpu's Muon
REFERENCE_TPS = 10_900
# Fine-tuning's wall time over its probed step time: validation every 100 steps, checkpoints, batches built on the
# host (the quickstart on the reference machine: 1,400 steps in 576 s against 492 s probed)
SFT_OVERHEAD = 1.17
# The floor, in tokens (so that a --set train.batch_size keeps it): 2,500 steps of the quickstart's batch of 8 x 256
# tokens (with 1,400 fine-tuning steps, a base of 2,691 such steps named its persona in 84% of answers, one of 622
# steps in 62%; docs/benchmarks.md)
MIN_PRETRAIN_TOKENS = 2500 * 8 * 256
PRETRAIN_OVERHEAD = 1.10  # pretraining's wall time over its probed step time (validation, checkpoints)
MAX_DEPTH = 24
SIZE_EPOCHS = 4  # passes over the training split the model is sized to (module docstring)
MAX_EPOCHS = 16  # passes after which pretraining stops


def training_tokens_per_second(run_cfg: RunConfig, *, steps: int = 5, warmup: int = 2) -> float:
    """Tokens/s of full training steps (forward, loss, backward, optimizer) of `run_cfg`'s model at its
    micro-batch and context, on its device and dtype, random tokens; the median of `steps` steps after `warmup`."""
    from owngpt.model.registry import make_model
    from owngpt.train.optim import make_optimizer

    cfg = run_cfg.train
    device = resolve_device(cfg.device)
    configure(device, cfg.threads)
    generator = torch.Generator().manual_seed(0)
    model = make_model(run_cfg.model).to(device)
    optimizer = make_optimizer(model, cfg)
    context, _ = autocast(device, cfg.dtype)
    B, T, V = cfg.batch_size, run_cfg.model.block_size, run_cfg.model.vocab_size
    x = torch.randint(0, V, (B, T), generator=generator).to(device)
    y = torch.randint(0, V, (B, T), generator=generator).to(device)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with context:
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, V), y.view(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return B * T / statistics.median(times)


def model_size(run_cfg: RunConfig) -> tuple[int, int]:
    """(parameters other than the embedding table, training FLOPs per token) of `run_cfg`'s model, built on the
    meta device (no memory, no time)."""
    from owngpt.model.registry import make_model

    with torch.device("meta"):
        model = make_model(run_cfg.model)
    return model.num_params(non_embedding=True), model.flops_per_token()


def depth_overrides(depth: int, base_lr: float, base_width: int) -> list[str]:
    """The depth rule as overrides of the tiny-cpu recipe: depth layers, 64 * depth wide, heads of 64, lr (and
    min_lr a tenth of it) scaled from the recipe's by width^-1/2 (Muon's rate follows it: train.muon_lr_scale)."""
    width = 64 * depth
    lr = base_lr * math.sqrt(base_width / width)
    return [f"model.n_layer={depth}", f"model.n_embd={width}", f"model.n_head={depth}", f"train.lr={lr:.3g}",
            f"train.min_lr={lr / 10:.3g}"]


@dataclass
class Plan:
    minutes: float
    sft_steps: int
    pretrain_seconds: float = 0.0
    pretrain_steps: int = 0  # > 0: pretraining runs these steps whatever they take (the floor, or MAX_EPOCHS passes)
    sft_seconds: float = 0.0  # estimated
    evaluate_seconds: float = 0.0  # reserved
    model: str = "tiny-cpu"  # "tiny-cpu" or "depth N"
    model_overrides: list[str] = field(default_factory=list)  # pretraining overrides that make the model
    params: int = 0  # other than the embedding table
    lr_scale: float = 1.0  # of the recipes' learning rates (pretraining and fine-tuning): width^-1/2
    pretrain_tps: float = 0.0  # the probe's, at the chosen model
    sft_tps: float = 0.0
    tokens: int = 0  # pretraining tokens expected
    reference_tps: float = REFERENCE_TPS
    probe_tps: float = 0.0  # pretraining tokens/s of the tiny-cpu probe, compared with REFERENCE_TPS
    data_tokens: int = 0  # tokens in the training split (0: not known, no data bounds)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the plan's other decisions, in words

    @property
    def pretrain_time(self) -> str:
        return f"{max(1, round(self.pretrain_seconds))}s"


def plan_budget(minutes: float, spent: float, pretrain_cfg: RunConfig, sft_cfg: RunConfig, *, sft_steps: int,
                fixed_sft_seconds: float = 0.0, evaluate_seconds: float = 40.0, size_model: bool = True,
                data_tokens: int = 0, probe: Callable[[RunConfig], float] | None = None) -> Plan:
    """The plan of the module docstring for `minutes` of which `spent` seconds are gone (preparing data):
    `pretrain_cfg` is the tiny-cpu recipe at the quickstart's context and vocabulary, `sft_cfg` the same model
    with the fine-tuning batch; `sft_steps` = 0 with `fixed_sft_seconds`: fine-tuning bounded by wall time
    instead; `size_model=False` keeps tiny-cpu (the user fixed the model); `data_tokens`: the training split's size
    (0 = unknown: the data bounds nothing)."""
    plan = Plan(minutes=minutes, sft_steps=sft_steps, data_tokens=data_tokens)
    probe = probe or training_tokens_per_second
    tps_pre, tps_sft = probe(pretrain_cfg), probe(sft_cfg)
    plan.probe_tps = round(tps_pre)
    slowdown = plan.reference_tps / tps_pre
    plan.evaluate_seconds = round(evaluate_seconds * max(1.0, slowdown), 1)
    left = minutes * 60 - spent - plan.evaluate_seconds
    tokens_per_sft_step = sft_cfg.train.batch_size * sft_cfg.model.block_size
    params0, flops0 = model_size(pretrain_cfg)
    choice = None
    depth = 3
    candidates = [("tiny-cpu", [], pretrain_cfg)]
    while size_model and depth <= MAX_DEPTH:
        extra = depth_overrides(depth, pretrain_cfg.train.lr, pretrain_cfg.model.n_embd)
        cfg = replace(pretrain_cfg, model=replace(pretrain_cfg.model, n_layer=depth, n_embd=64 * depth,
                                                  n_head=depth, n_kv_head=depth, mlp_hidden=None))
        candidates.append((f"depth {depth}", extra, cfg))
        depth += 1
    for name, extra, cfg in candidates:
        params, flops = model_size(cfg) if extra else (params0, flops0)
        scale = flops0 / flops
        sft_seconds = (SFT_OVERHEAD * sft_steps * tokens_per_sft_step / (tps_sft * scale) if sft_steps
                       else fixed_sft_seconds)
        pretrain_seconds = left - sft_seconds
        tokens = pretrain_seconds * tps_pre * scale
        usable = min(tokens, SIZE_EPOCHS * data_tokens) if data_tokens else tokens  # repeats beyond: worth little
        if choice is not None and usable < TOKENS_PER_PARAM * params:
            break
        choice = (name, extra, cfg.model.n_embd, params, tps_pre * scale, tps_sft * scale, sft_seconds,
                  pretrain_seconds, tokens)
    name, extra, width, params, p_tps, s_tps, sft_seconds, pretrain_seconds, tokens = choice
    plan.model, plan.model_overrides, plan.params = name, extra, params
    plan.lr_scale = round(math.sqrt(pretrain_cfg.model.n_embd / width), 4)  # 1.0 for tiny-cpu itself
    plan.pretrain_tps, plan.sft_tps = round(p_tps), round(s_tps)
    plan.sft_seconds = round(sft_seconds, 1)
    tokens_per_step = pretrain_cfg.train.batch_size * pretrain_cfg.model.block_size
    min_steps = math.ceil(MIN_PRETRAIN_TOKENS / tokens_per_step)  # the floor in steps of this batch
    floor = PRETRAIN_OVERHEAD * min_steps * tokens_per_step / p_tps
    if data_tokens and tokens > MAX_EPOCHS * data_tokens and pretrain_seconds >= floor:
        # in steps, like the floor (never below it): MAX_EPOCHS passes whatever the machine's speed turns out to be
        steps = max(min_steps, math.ceil(MAX_EPOCHS * data_tokens / tokens_per_step))
        seconds = PRETRAIN_OVERHEAD * steps * tokens_per_step / p_tps
        if seconds < pretrain_seconds:
            passes = steps * tokens_per_step / data_tokens
            why = (f"its floor of {min_steps:,} steps ({passes:.0f} passes, more than {MAX_EPOCHS}: the "
                   "persona needs them)" if steps == min_steps else f"{steps:,} steps ({MAX_EPOCHS} passes)")
            plan.notes.append(
                f"the training split holds {data_tokens / 1e6:.2f}M tokens: pretraining stops after {why}, "
                f"~{seconds / 60:.1f} min instead of {pretrain_seconds / 60:.1f}, so the run ends before its budget; "
                "more text, not more minutes, would buy a better model")
            plan.pretrain_steps, pretrain_seconds, tokens = steps, seconds, steps * tokens_per_step
    if pretrain_seconds < floor:
        plan.pretrain_steps = min_steps
        total = spent + plan.evaluate_seconds + sft_seconds + floor
        plan.warnings.append(
            f"{minutes:g} minutes are too few on this machine for a model that holds its persona: pretraining gets "
            f"its minimum of {min_steps:,} steps (~{floor / 60:.1f} min) and fine-tuning "
            + (f"its {sft_steps:,} steps" if sft_steps else "its time") + f" (~{sft_seconds / 60:.1f} min), so the "
            f"run takes ~{total / 60:.0f} minutes")
        pretrain_seconds, tokens = floor, min_steps * tokens_per_step
    plan.pretrain_seconds, plan.tokens = round(pretrain_seconds, 1), int(tokens)
    if slowdown > 1.2:
        plan.warnings.append(
            f"this machine trains {slowdown:.1f}x slower than the README's reference ({plan.probe_tps:,} tokens/s "
            f"against {plan.reference_tps:,}): "
            + (f"fine-tuning keeps its {sft_steps:,} steps, so the persona holds, but " if sft_steps else "")
            + "pretraining sees fewer tokens, so expect a higher perplexity than the README's figures"
            + (f"; --minutes {math.ceil(minutes * slowdown):g} would buy them back" if not fixed_sft_seconds else ""))
    return plan
