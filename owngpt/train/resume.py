"""Which checkpoint a run continues from, whether its weights fit the model (a resume must match the run), and
how fit() saves and resumes its whole state (CheckpointedRun: weights, optimizer, RNG and data position, gathered
to rank 0 and sent back out under torchrun)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from owngpt.checkpoint.format import best_or_latest, latest_checkpoint, load_checkpoint, save_checkpoint
from owngpt.checkpoint.meta import make_meta
from owngpt.config import TrainConfig
from owngpt.model.registry import arch_of, config_dict
from owngpt.runtime import capture_rng_state, restore_rng_state
from owngpt.errors import OwnGPTError


def resume_path(cfg: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, or None to start afresh. Starting afresh (or from another run's checkpoint)
    in a folder that already holds checkpoints is refused: the two runs' checkpoints would mix, and a later
    `--resume auto` would pick whichever has the higher step."""
    if cfg.resume == "auto":
        return latest_checkpoint(run_dir)
    path = None if cfg.resume in ("", "none") else Path(cfg.resume)
    if path is not None and not path.exists():
        raise OwnGPTError(f"train.resume: {path} does not exist (use auto, none, or a checkpoint folder)")
    held = latest_checkpoint(run_dir)
    ours = path is not None and (path.resolve() == run_dir.resolve() or run_dir.resolve() in path.resolve().parents)
    if held is not None and not ours:
        raise OwnGPTError(f"{run_dir} already holds a run (checkpoints up to {held.name}); continue it with --resume auto, "
                          f"or start the new run in another --out (or delete {run_dir} first)")
    return None if path is None else latest_checkpoint(path) or best_or_latest(path)


def check_fits(model: nn.Module, path: Path, state: dict[str, torch.Tensor],
               weights_filter: Callable[[str], bool] | None) -> None:
    """Whether a checkpoint's weights (those `weights_filter` selects) fit the model; else say in one line why not."""
    own = model.state_dict()
    selected = {k for k in own if weights_filter is None or weights_filter(k)}
    missing = sorted(selected - set(state))
    unexpected = sorted(set(state) - set(own))
    resized = [f"{k} {tuple(v.shape)} there, {tuple(own[k].shape)} here" for k, v in state.items()
               if k in own and v.shape != own[k].shape]
    if missing or unexpected or resized:
        found = "; ".join(part for part in (f"missing {missing[:3]}" if missing else "",
                                            f"unexpected {unexpected[:3]}" if unexpected else "",
                                            f"shapes differ: {', '.join(resized[:2])}" if resized else "") if part)
        raise OwnGPTError(f"{path} does not fit this model ({found}); resume with the model settings that made it "
                          f"(its run folder's config.yaml), or start the new model in another --out")


class CheckpointedRun:
    """fit()'s saving and resuming, mixed into its trainer: reads and sets the trainer's counters, model, optimizer,
    loaders and `par` (the Parallel), nothing else."""

    def _read_resume(self) -> tuple[Path | None, dict, dict | None]:
        """(checkpoint, weights, train state) to continue from, read by rank 0 only: other ranks (other machines)
        may not see the run folder, and get what it read by broadcast."""
        path = resume_path(self.cfg, self.run_dir)
        if path is None:
            return None, {}, None
        state, meta, ts = load_checkpoint(path)
        if ts is None:
            raise OwnGPTError(f"{path} has no train_state.pt, so it cannot be resumed; start a new run (another --out) "
                              f"with train.init_from={path}")
        theirs, ours = meta.tokenizer_hash, getattr(self.tokenizer, "hash", None)
        if theirs and ours and theirs != ours:
            raise OwnGPTError(f"{path} was trained with tokenizer {theirs}, but this data uses tokenizer {ours}: "
                              "resume with the data it was trained on, or start the new run in another --out")
        check_fits(self.raw_model, path, state, self.weights_filter)
        if "muon" in ts["optimizer"] and self.cfg.optimizer != "muon":
            raise OwnGPTError(f"{path} was trained with train.optimizer=muon: resume with it, or start a new run "
                              "(another --out, or train.init_from=CHECKPOINT) with AdamW")
        return path, state, ts

    def resume(self) -> None:
        path, state, ts = self.par.share_resume(self.par.main_only(self._read_resume))
        if path is None:
            return
        self.par.load_model_state(self.raw_model, state)
        # the moments and step counts continue; the settings are this run's (a resume may change weight decay,
        # betas or eps: load_state_dict would bring back the saved ones while config.yaml shows the new ones)
        settings = [{k: g[k] for k in ("weight_decay", "betas", "eps", "momentum", "lr_scale") if k in g}
                    for g in self.optimizer.param_groups]
        try:
            self.par.load_optimizer_state(self.raw_model, self.optimizer, ts["optimizer"])
        except ValueError as e:  # torch: a different number of parameter groups, or of parameters in one
            raise OwnGPTError(f"{path}: its optimizer state does not fit this run's parameter groups ({e}); resume with "
                              "the settings that made it (its run folder's config.yaml: train.optimizer, "
                              "train.embed_lr_scale, model.tie_embeddings), or start a new run in another --out") from None
        for group, own in zip(self.optimizer.param_groups, settings):
            group.update(own)
        if self.scaler is not None and "scaler" in ts:
            self.scaler.load_state_dict(ts["scaler"])
        self.restore_rng(ts)
        if ts.get("loader") is not None and hasattr(self.train_batches, "load_state_dict"):
            self.train_batches.load_state_dict(ts["loader"])
        self.step, self.tokens = int(ts["step"]), int(ts["tokens"])
        self.best_val = float(ts["best_val_loss"])
        self.best_step = ts.get("best_step")
        self.bad_evals = int(ts["bad_evals"])
        self.nonfinite_in_row, self.nonfinite_total = int(ts["nonfinite_in_row"]), int(ts["nonfinite_total"])
        self.elapsed_before = float(ts["elapsed"])
        self.val_history = [(int(s), float(v)) for s, v in ts.get("val_history", [])]
        self.last_saved_step = self.step
        self.resumed_from = str(path)
        if self.echo is not None:
            self.echo(f"resuming from {path} (step {self.step}, {self.tokens:,} tokens seen)")

    def restore_rng(self, ts: dict) -> None:
        """This rank's random state as saved; at another world size rank 0 takes the saved rank 0's (so a single
        process continues the stream it would have had) and the others a fresh seed for their dropout masks."""
        ranks = ts.get("rng_ranks")
        if ranks and len(ranks) == self.par.world_size:
            restore_rng_state(ranks[self.par.rank])
        elif self.par.rank == 0:
            restore_rng_state(ts["rng"])
        else:
            torch.manual_seed(self.cfg.seed + 1_000_003 * self.par.rank + int(ts["step"]))

    def save(self, val_loss: float | None, best: bool, elapsed: float) -> Path | None:
        """Checkpoint the run (rank 0 writes; every rank takes part in gathering FSDP's shards). The path on rank 0."""
        state = self.par.model_state(self.raw_model)
        optimizer = self.par.optimizer_state(self.raw_model, self.optimizer)
        rngs = self.par.gather_objects(capture_rng_state())
        # a save that failed on rank 0 (disk full, non-finite weights) stops every rank, not only rank 0
        path = self.par.main_only(lambda: self._write(state, optimizer, rngs, val_loss, best, elapsed))
        self.last_saved_step = self.step
        return path

    def _write(self, state: dict, optimizer: dict, rngs: list, val_loss: float | None, best: bool,
               elapsed: float) -> Path:
        if self.weights_filter is not None:
            state = {k: v for k, v in state.items() if self.weights_filter(k)}
        meta = make_meta(arch=arch_of(self.raw_model), model_config=config_dict(self.raw_model), tokenizer=self.tokenizer,
                         run_config=self.run_config, tokens=self.tokens, val_loss=val_loss,
                         best_val_loss=self.best_val if math.isfinite(self.best_val) else None,
                         weights_filtered=self.weights_filter is not None)
        train_state = {
            "optimizer": optimizer,
            "rng": rngs[0],
            "loader": self.train_batches.state_dict() if hasattr(self.train_batches, "state_dict") else None,
            "step": self.step,
            "tokens": self.tokens,
            "best_val_loss": self.best_val,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "nonfinite_in_row": self.nonfinite_in_row,
            "nonfinite_total": self.nonfinite_total,
            "elapsed": elapsed,
            "val_history": [[s, v] for s, v in self.val_history],
        }
        if len(rngs) > 1:
            train_state["rng_ranks"] = rngs
        if self.scaler is not None:
            train_state["scaler"] = self.scaler.state_dict()
        return save_checkpoint(self.run_dir, self.step, state, meta, train_state, tokenizer=self.tokenizer,
                               best=best, keep_last=self.cfg.keep_last)

