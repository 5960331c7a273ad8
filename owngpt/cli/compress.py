"""`owngpt quantize` and `owngpt prune`: make a trained GPT smaller for inference (owngpt/export/quantize.py, prune.py)."""

from __future__ import annotations

from typing import List, Optional

import typer

from owngpt.cli import app


@app.command(help="Quantize a GPT run for CPU inference into a new run folder that generate, chat, eval and serve "
             "load like any other. int8 checkpoints cannot be trained further; keep the original to fine-tune.")
def quantize(
    run: str = typer.Argument(..., help="A GPT run folder (its best, else latest checkpoint) or a checkpoint folder."),
    out: str = typer.Option(..., "--out", help="New run folder for the quantized model; it must not exist or be empty."),
    method: str = typer.Option("int8-weight", "--method", help="int8-weight: int8 weights, bf16 activations (a "
                               "quarter of fp32's bytes; measured 1.6-1.8x fp32's tokens/s at batch 1 on an AVX2 CPU, "
                               "perplexity unchanged); int8-dynamic: activations quantized to int8 too, per call "
                               "(1.7-1.9x at batch 1, 1.8-2.5x at batch 8, +0.4% perplexity there); "
                               "bf16: bf16 weights, half the file, computed in bf16 on CPUs with native bf16 "
                               "(avx512_bf16/AMX; elsewhere it loads as fp32)."),
    head: bool = typer.Option(False, "--head/--no-head", help="int8: also quantize the output head. An untied "
                              "head (tiny-cpu's, so the quickstart's) becomes int8 in place (a smaller file); with tied "
                              "embeddings this stores an int8 copy beside the embedding (a larger file). It speeds "
                              "decoding most when the vocabulary is large."),
) -> None:
    from owngpt.export.quantize import quantize_run

    done = quantize_run(run, out, method=method, head=head)
    mb = 1024 * 1024
    typer.echo(f"quantized {run} ({done['method']}) → {done['path']}: model.safetensors "
               f"{done['bytes_before'] / mb:.1f} MiB → {done['bytes_after'] / mb:.1f} MiB  (use: owngpt chat {out})")


@app.command(help="Prune a GPT run into a new run folder. Without --structured: magnitude pruning (the smallest "
             "weights of every block matrix set to zero; same shape, same speed on a CPU — dense matmuls do not skip "
             "zeros). With --structured: whole attention heads and/or MLP neurons removed, the least important per "
             "layer on --data's val split, so the model really gets smaller and faster.")
def prune(
    run: str = typer.Argument(..., help="A GPT run folder (its best, else latest checkpoint) or a checkpoint folder."),
    out: str = typer.Option(..., "--out", help="New run folder for the pruned model; it must not exist or be empty."),
    sparsity: float = typer.Option(..., "--sparsity", help="Fraction to remove, at least 0 and below 1: of each block "
                                   "matrix's weights (magnitude), or of each layer's heads / MLP neurons (--structured)."),
    structured: Optional[str] = typer.Option(None, "--structured", help="heads | mlp | both: remove whole heads "
                                             "(kv groups with grouped-query attention), MLP neurons, or both."),
    data: Optional[str] = typer.Option(None, "--data", help="A folder written by `owngpt prepare` with the model's "
                                       "tokenizer: its val split ranks heads and neurons; --recover-steps trains on it."),
    batches: int = typer.Option(8, "--batches", help="Val batches to measure importance on (more: steadier ranking)."),
    recover_steps: int = typer.Option(0, "--recover-steps", help="After structured pruning, train this many steps on "
                                      "--data (the pretraining loop) to win back quality; 0 = none."),
    recover_lr: float = typer.Option(1e-4, "--recover-lr", help="Learning rate of the recovery training."),
    set_: List[str] = typer.Option([], "--set", help="Another training setting for the recovery, e.g. --set "
                                   "train.batch_size=16 (repeatable)."),
) -> None:
    from owngpt.export.prune import prune_run

    done = prune_run(run, out, sparsity, structure=structured, data=data, n_batches=batches,
                     recover_steps=recover_steps, recover_lr=recover_lr, overrides=list(set_), quiet=False,
                     echo=typer.echo)
    line = (f"pruned {run} ({done['structure']}, sparsity {sparsity:g}) → {done['path']}: "
            f"{done['params_before'] / 1e6:.2f}M → {done['params_after'] / 1e6:.2f}M parameters")
    if "zero_fraction" in done:
        line += f", {done['zero_fraction']:.1%} of block weights zero"
    if "recovery" in done:
        line += f"; recovered {done['recovery']['steps']} steps, best val loss {done['recovery']['best_val_loss']:.4f}"
    typer.echo(line + f"  (use: owngpt chat {out})")
