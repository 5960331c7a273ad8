"""`owngpt prune`: make a GPT smaller by removing weights — magnitude (unstructured) or whole heads and MLP neurons.

unstructured  the smallest |w| of every block matrix set to zero, each matrix to the same sparsity. The model stays
              a plain GPT of the same shape: dense matmuls do the same work on zeros, so this buys neither speed nor
              (uncompressed) file size on a CPU; it shows how much of the model the data needs.
structured    whole attention heads (with grouped-query attention: whole kv groups, a kv head and its query heads)
              and MLP neurons removed, the same number in every layer (so one ModelConfig — n_head, n_kv_head,
              head_size, mlp_hidden — still describes the model), which ones per layer chosen by first-order Taylor
              importance on held-out batches: |dL/dg| for a gate g = 1 on each head's output / each neuron's
              activation, i.e. the loss change removing it predicts (Molchanov et al. 2019), summed over batches.
              Fewer parameters, a smaller file, faster decoding.

A recovery fine-tune (`recover_steps`) continues the pruned model with the pretraining recipe (`train.init_from`),
the same fit() as every run. Unstructured pruning refuses it: fit() keeps no masks, so training would regrow the
zeros.

Not handled: pruning layers or the residual width, per-layer head counts, quantized or non-GPT checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from owngpt.checkpoint.meta import make_meta
from owngpt.errors import OwnGPTError
from owngpt.export.quantize import check_quantizable
from owngpt.io import output_dir
from owngpt.model.gpt import GPT, mlp_hidden_size

STRUCTURES = ("heads", "mlp", "both")
PRUNED_KEY = "pruned"  # the run_config section a pruned checkpoint records how it was made in


def check_sparsity(sparsity: float) -> None:
    if not (isinstance(sparsity, (int, float)) and math.isfinite(sparsity) and 0 <= sparsity < 1):
        raise OwnGPTError(f"--sparsity must be at least 0 and below 1 (a fraction of weights to remove), not {sparsity!r}")


def block_matrices(model: GPT) -> list[tuple[str, nn.Linear]]:
    """The Linear layers of the Transformer blocks: what unstructured pruning zeroes (embeddings and head stay)."""
    return [(n, m) for n, m in model.transformer.h.named_modules(prefix="transformer.h") if isinstance(m, nn.Linear)]


# ----------------------------------------------------------------------------- unstructured


@torch.no_grad()
def magnitude_prune(model: GPT, sparsity: float) -> float:
    """Zero the round(sparsity * numel) smallest-|w| weights of every block matrix, in place; returns the fraction of
    block-matrix weights that are zero afterwards."""
    check_sparsity(sparsity)
    zeros = total = 0
    for _name, linear in block_matrices(model):
        w = linear.weight  # (out, in)
        k = round(sparsity * w.numel())
        if k:
            cut = w.abs().flatten().kthvalue(k).values  # the k-th smallest magnitude
            w.masked_fill_(w.abs() <= cut, 0.0)  # ties at the cut may zero a few more; exact for continuous weights
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / total


# ----------------------------------------------------------------------------- structured: importance


def _groups(cfg) -> tuple[int, int]:
    """(kv groups, query heads per group): the unit head pruning removes is one kv head with its query heads."""
    return cfg.n_kv_head, cfg.n_head // cfg.n_kv_head


def importance(model: GPT, batches: Callable[[], tuple[torch.Tensor, torch.Tensor]], n_batches: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Taylor importance of every kv group (n_layer, n_kv_head) and MLP neuron (n_layer, hidden), from `n_batches`
    calls of batches() -> (x, y). Gates of ones multiply each head's output (before c_proj) and each neuron's
    activation (before the MLP's c_proj); per batch |dL/dgate| is the loss change removing that unit predicts."""
    cfg = model.cfg
    n_groups, per_group = _groups(cfg)
    hidden = mlp_hidden_size(cfg)
    device = next(model.parameters()).device
    head_gates = torch.ones(cfg.n_layer, cfg.n_head, device=device, requires_grad=True)
    mlp_gates = torch.ones(cfg.n_layer, hidden, device=device, requires_grad=True)
    hooks = []
    for layer, block in enumerate(model.transformer.h):
        hooks.append(block.attn.c_proj.register_forward_pre_hook(_head_gate(head_gates[layer], cfg.head_dim)))
        hooks.append(block.mlp.c_proj.register_forward_pre_hook(_neuron_gate(mlp_gates[layer])))
    heads = torch.zeros(cfg.n_layer, n_groups)
    neurons = torch.zeros(cfg.n_layer, hidden)
    was_training = model.training
    model.eval()  # no dropout: the importance of the model as it will run
    try:
        for _ in range(n_batches):
            x, y = batches()
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-1)
            g_heads, g_mlp = torch.autograd.grad(loss, [head_gates, mlp_gates])
            # removing a group removes all its query heads at once: their gradients add before the magnitude
            heads += g_heads.view(cfg.n_layer, n_groups, per_group).sum(-1).abs().cpu()
            neurons += g_mlp.abs().cpu()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return heads, neurons


def _head_gate(gate: torch.Tensor, head_dim: int):
    def hook(_module, args):
        (y,) = args  # (B, T, nh*hd): heads side by side
        B, T, _ = y.shape
        return (y.view(B, T, -1, head_dim) * gate[:, None].to(y.dtype)).view(B, T, -1),
    return hook


def _neuron_gate(gate: torch.Tensor):
    def hook(_module, args):
        (h,) = args  # (B, T, hidden)
        return (h * gate.to(h.dtype)),
    return hook


# ----------------------------------------------------------------------------- structured: surgery


def lowest(scores: torch.Tensor, remove: int) -> list[list[int]]:
    """Per row of `scores` (n_layer, units), the indices kept after removing its `remove` lowest, in order."""
    keep = scores.shape[1] - remove
    return [sorted(row.topk(keep).indices.tolist()) for row in scores]


@torch.no_grad()
def keep_units(model: GPT, groups: list[list[int]], neurons: list[list[int]]) -> GPT:
    """A new, smaller GPT holding only the listed kv groups (per layer) and MLP neurons (per layer) of `model`;
    every layer must keep the same number of each. Keeping everything gives the same model."""
    cfg = model.cfg
    n_groups, per_group = _groups(cfg)
    hd, hidden = cfg.head_dim, mlp_hidden_size(cfg)
    kept_groups, kept_neurons = {len(g) for g in groups}, {len(n) for n in neurons}
    if len(kept_groups) != 1 or len(kept_neurons) != 1:
        raise OwnGPTError("structured pruning keeps the same number of heads and neurons in every layer")
    new_groups, new_hidden = kept_groups.pop(), kept_neurons.pop()
    changes: dict[str, Any] = {}
    if new_groups != n_groups:  # head_size pins the heads' width, no longer n_embd // n_head
        changes.update(n_head=new_groups * per_group, n_kv_head=new_groups, head_size=hd)
    if new_hidden != hidden:
        changes.update(mlp_hidden=new_hidden)
    state = dict(model.state_dict())
    for layer, block in enumerate(model.transformer.h):
        p = f"transformer.h.{layer}."
        q_rows = _rows([h for g in groups[layer] for h in range(g * per_group, (g + 1) * per_group)], hd)
        kv_rows = _rows(groups[layer], hd)
        q_all = cfg.n_head * hd
        attn_rows = torch.cat([q_rows, q_all + kv_rows, q_all + n_groups * hd + kv_rows])  # c_attn is [q | k | v]
        _take(state, p + "attn.c_attn", rows=attn_rows)
        _take(state, p + "attn.c_proj", cols=q_rows)
        units = torch.tensor(neurons[layer], dtype=torch.long)
        fc_rows = torch.cat([units, hidden + units]) if cfg.mlp == "swiglu" else units  # swiglu's c_fc is [gate | up]
        _take(state, p + "mlp.c_fc", rows=fc_rows)
        _take(state, p + "mlp.c_proj", cols=units)
    out = GPT(replace(cfg, **changes)).to(next(model.parameters()).device)
    out.load_state_dict(state, strict=True)
    return out.train(model.training)


def _rows(units: list[int], size: int) -> torch.Tensor:
    """Row indices of whole units of `size` rows each (a head's hd rows)."""
    return (torch.tensor(units, dtype=torch.long)[:, None] * size + torch.arange(size)).flatten()


def _take(state: dict[str, torch.Tensor], prefix: str, rows: torch.Tensor | None = None,
          cols: torch.Tensor | None = None) -> None:
    """Keep `rows` of a Linear's weight and bias (its outputs) or `cols` of its weight (its inputs)."""
    w = state[prefix + ".weight"]  # (out, in)
    if rows is not None:
        state[prefix + ".weight"] = w[rows.to(w.device)].contiguous()
        if prefix + ".bias" in state:
            state[prefix + ".bias"] = state[prefix + ".bias"][rows.to(w.device)].contiguous()
    if cols is not None:
        state[prefix + ".weight"] = w[:, cols.to(w.device)].contiguous()


def structured_prune(model: GPT, sparsity: float, structure: str,
                     batches: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None, n_batches: int = 8) -> GPT:
    """A smaller GPT without the `sparsity` fraction of kv groups ("heads"), MLP neurons ("mlp") or both, the least
    important per layer (see importance). sparsity 0 returns the same model (rebuilt)."""
    check_sparsity(sparsity)
    if structure not in STRUCTURES:
        raise OwnGPTError(f"--structured must be one of {', '.join(STRUCTURES)}, not {structure!r}")
    cfg = model.cfg
    n_groups, hidden = cfg.n_kv_head, mlp_hidden_size(cfg)
    drop_groups = round(sparsity * n_groups) if structure in ("heads", "both") else 0
    drop_neurons = round(sparsity * hidden) if structure in ("mlp", "both") else 0
    if drop_groups >= n_groups:
        raise OwnGPTError(f"sparsity {sparsity} would remove all {n_groups} "
                          f"{'kv groups' if cfg.n_kv_head != cfg.n_head else 'heads'} of every layer; use a lower one")
    if drop_neurons >= hidden:
        raise OwnGPTError(f"sparsity {sparsity} would remove all {hidden} MLP neurons of every layer; use a lower one")
    if drop_groups == 0 and drop_neurons == 0:
        return keep_units(model, [list(range(n_groups))] * cfg.n_layer, [list(range(hidden))] * cfg.n_layer)
    if batches is None:
        raise OwnGPTError("structured pruning ranks heads and neurons on held-out data: pass --data DIR "
                          "(a folder written by `owngpt prepare` with the model's tokenizer)")
    head_scores, neuron_scores = importance(model, batches, n_batches)
    return keep_units(model, lowest(head_scores, drop_groups), lowest(neuron_scores, drop_neurons))


# ----------------------------------------------------------------------------- the verb


def val_batches(data: str | Path, tokenizer, block_size: int, batch_size: int = 8, seed: int = 0):
    """next_batch of a prepared folder's val split (windows of the model's context), for ranking units."""
    from owngpt.data.loader import TokenBatches
    from owngpt.data.shards import read_manifest

    splits = read_manifest(Path(data)).get("splits", {})
    if not splits.get("val", {}).get("tokens"):
        raise OwnGPTError(f"{data} has no val split to rank heads and neurons on; prepare it with a validation share")
    val = TokenBatches(data, "val", batch_size, block_size, seed=seed, tokenizer_hash=getattr(tokenizer, "hash", None))
    return val.next_batch


def prune_run(source: str | Path, out: str | Path, sparsity: float, *, structure: str | None = None,
              data: str | Path | None = None, n_batches: int = 8, recover_steps: int = 0, recover_lr: float = 1e-4,
              overrides: list[str] | None = None, quiet: bool = True, echo: Callable[[str], None] = print
              ) -> dict[str, Any]:
    """`owngpt prune`: the GPT checkpoint `source` pruned into the new run folder `out` — structured when `structure`
    is given, else by magnitude — optionally followed by `recover_steps` of recovery training on `data` (then
    out/pruned holds the model before recovery and out/best the recovered one). Returns what was done."""
    from owngpt.checkpoint.format import best_or_latest, load_model, read_meta, save_checkpoint
    from owngpt.model.registry import config_dict

    check_sparsity(sparsity)
    if recover_steps < 0:
        raise OwnGPTError(f"--recover-steps must be 0 or more, not {recover_steps}")
    if recover_steps and structure is None:
        raise OwnGPTError("recovery training after magnitude pruning would regrow the zeroed weights (the training "
                          "loop keeps no masks); use --structured, or prune without --recover-steps")
    if recover_steps and data is None:
        raise OwnGPTError("--recover-steps trains on your data: pass --data DIR (a folder written by `owngpt prepare`)")
    ckpt = best_or_latest(source)
    meta = read_meta(ckpt)
    check_quantizable(meta, source, verb="prune")
    out_path = output_dir(out, create=False)
    model, meta, tok = load_model(ckpt, device="cpu")
    before = model.num_params()
    record: dict[str, Any] = {"sparsity": sparsity, "structure": structure or "unstructured", "source": str(ckpt),
                              "source_sha256": meta.sha256}
    if structure is None:
        record["zero_fraction"] = magnitude_prune(model, sparsity)
    else:
        batches = val_batches(data, tok, model.cfg.block_size) if data is not None else None
        model = structured_prune(model, sparsity, structure, batches, n_batches)
    record.update(params_before=before, params_after=model.num_params())
    pruned_dir = out_path / "pruned" if recover_steps else out_path
    new_meta = make_meta(arch=model.arch, model_config=config_dict(model), tokenizer=tok,
                         run_config={**meta.run_config, "model": config_dict(model), PRUNED_KEY: record},
                         tokens=meta.tokens)
    save_checkpoint(pruned_dir, meta.step, model.state_dict(), new_meta, None, tokenizer=tok, best=True, keep_last=1)
    if recover_steps:
        record["recovery"] = _recover(pruned_dir, out_path, data, recover_steps, recover_lr, overrides or [], quiet,
                                      echo)
    return {"path": str(out_path), **record}


def _recover(pruned: Path, out: Path, data: str | Path, steps: int, lr: float, overrides: list[str], quiet: bool,
             echo: Callable[[str], None]) -> dict[str, Any]:
    """Continue the pruned model with the pretraining recipe (train.init_from), as `owngpt pretrain --init-from`, with
    AdamW at the recovery's lr (what the recovery figures in docs/benchmarks.md measured; --set may change it)."""
    from owngpt.config import load_run_config
    from owngpt.train.pretrain import pretrain

    settings = [f"train.data={data}", f"train.init_from={pruned}", f"train.out_dir={out}", f"train.max_steps={steps}",
                "train.resume=none", f"train.lr={lr}", f"train.min_lr={lr / 10}", "train.optimizer=adamw",
                f"train.warmup_steps={max(1, steps // 10)}", f"train.eval_interval={max(1, steps // 4)}", *overrides]
    result = pretrain(load_run_config("tiny-cpu", settings), quiet=quiet, echo=echo if not quiet else (lambda _: None))
    return {"steps": result.steps, "best_val_loss": result.best_val_loss}
