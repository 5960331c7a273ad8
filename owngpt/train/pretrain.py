"""Pretraining recipe: prepared token shards → model (GPT, or the baseline model.arch names) → fit().
setup → fit → summary, importable and testable.

    from owngpt.config import load_run_config
    from owngpt.train.pretrain import pretrain
    result = pretrain(load_run_config("tiny-cpu", ["train.data=data/prepared", "train.max_time=10m"]))
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from owngpt.config import RunConfig, to_dict
from owngpt.data.loader import TokenBatches
from owngpt.data.shards import read_manifest
from owngpt.errors import OwnGPTError
from owngpt.io import output_dir
from owngpt.runtime import launched_rank, resolve_device
from owngpt.train.loop import FitResult, fit

VOCAB_MULTIPLE = 64  # matmuls over a vocab padded to a multiple of 64 run faster; extra rows are never targets


def padded_vocab(n: int, multiple: int = VOCAB_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


def describe_model(model: torch.nn.Module, block_size: int) -> str:
    """One line: parameters (with and without embeddings) and training FLOPs per token."""
    n = model.num_params() if hasattr(model, "num_params") else sum(p.numel() for p in model.parameters())
    n_ne = model.num_params(non_embedding=True) if hasattr(model, "num_params") else n
    flops = model.flops_per_token() if hasattr(model, "flops_per_token") else 6 * n
    return (f"model: {n / 1e6:.2f}M parameters ({n_ne / 1e6:.2f}M without embeddings), "
            f"{flops / 1e6:.1f} MFLOPs/token for training, context {block_size}")


def setup(run_config: RunConfig):
    """(run_config with the tokenizer's vocab, model on its device, tokenizer, train batches, val batches). The model
    is the architecture run_config.model.arch names (registry.make_model), or with train.init_from the base's."""
    from owngpt.model.registry import build, make_model, require_trainable
    from owngpt.tokenizer import Tokenizer

    cfg = run_config.train
    if not cfg.data:
        raise OwnGPTError("no training data: pass --data DIR (a folder written by `owngpt prepare`)")
    data_dir = Path(cfg.data)
    manifest = read_manifest(data_dir)
    if not (data_dir / "tokenizer").is_dir():
        raise OwnGPTError(f"{data_dir}/tokenizer not found: run `owngpt prepare ... --out {data_dir}` with a tokenizer")
    tok = Tokenizer.load(data_dir / "tokenizer")
    model_cfg = dataclasses.replace(run_config.model, vocab_size=padded_vocab(tok.vocab_size))
    base_state = base_meta = None
    if cfg.init_from:  # continued pretraining (domain adaptation): the base decides the architecture
        from owngpt.checkpoint.format import best_or_latest, load_weights, read_meta, require_full_model

        base = best_or_latest(cfg.init_from)
        base_meta = read_meta(base)
        require_trainable(base_meta.arch, cfg.init_from)
        if (base_meta.arch or "gpt") != "gpt":  # config.yaml records a ModelConfig: only a GPT's sizes fit in it
            raise OwnGPTError(f"train.init_from: {cfg.init_from} holds an {base_meta.arch} model; continued "
                              "pretraining starts from GPT checkpoints only (resume the baseline's own run instead: "
                              "the same command with --resume auto)")
        require_full_model(base, base_meta)
        if base_meta.tokenizer_hash and base_meta.tokenizer_hash != tok.hash:
            raise OwnGPTError(f"{data_dir} was tokenized with a different tokenizer than {base}; re-run prepare "
                              f"with `--tokenizer {base}/tokenizer` so the data matches the base model")
        base_state = load_weights(base, base_meta)
        if (base / "tokenizer").is_dir():  # the same ids; the base's chat format (an import may keep GPT2-chitchat's)
            tok = tok.with_chat_format(Tokenizer.load(base / "tokenizer").chat_format)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # the same seed gives the same initial weights
    if base_state is not None:
        model = build(base_meta.arch, base_meta.model_config, dropout=run_config.model.dropout)
        model.load_state_dict(base_state, strict=True)
        model_cfg = model.cfg  # the base's architecture and sizes (a GPT's: a ModelConfig)
    else:
        model = make_model(model_cfg, tok)
    run_config = RunConfig(model=model_cfg, train=cfg)
    model.to(device)
    block = model_cfg.block_size
    train = TokenBatches(data_dir, "train", cfg.batch_size, block, seed=cfg.seed, device=device, tokenizer_hash=tok.hash)
    val = None
    if manifest.get("splits", {}).get("val", {}).get("tokens", 0) > 0:
        val = TokenBatches(data_dir, "val", cfg.batch_size, block, seed=cfg.seed + 1, device=device, tokenizer_hash=tok.hash)
    return run_config, model, tok, train, val


def pretrain(run_config: RunConfig, *, quiet: bool = False, echo: Callable[[str], None] = print,
             on_eval: Callable[[int, float], bool | str] | None = None) -> FitResult:
    """Train a model (a GPT unless run_config.model.arch names a baseline) from scratch on run_config.train.data;
    everything lands in run_config.train.out_dir.
    on_eval(step, val_loss): fit()'s hook after each validation; a truthy answer stops the run there."""
    output_dir(run_config.train.out_dir, create=False)  # a file there is a one-line error before any work
    run_config, model, tok, train, val = setup(run_config)
    cfg = run_config.train
    echo(describe_model(model, run_config.model.block_size))
    echo(f"data: {train.tokens:,} training tokens" + (f", {val.tokens:,} validation tokens" if val else ", no validation split")
         + f"; tokenizer {tok.kind}, vocab {tok.vocab_size} (padded to {run_config.model.vocab_size})")
    if val is None:
        echo("warning: no validation split, so no best checkpoint and no early stopping")
    result = fit(model, train, val, cfg, cfg.out_dir, run_config=to_dict(run_config), tokenizer=tok, quiet=quiet,
                 echo=echo, on_eval=on_eval)
    if launched_rank() == 0:  # under torchrun rank 0 writes the run folder (other machines may not see it)
        echo((Path(cfg.out_dir) / "summary.md").read_text(encoding="utf-8"))
    return result
