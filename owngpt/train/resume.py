"""Which checkpoint a run continues from, and whether its weights fit the model (a resume must match the run)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from owngpt.checkpoint.format import best_or_latest, latest_checkpoint
from owngpt.config import TrainConfig
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


def load_fitting(model: nn.Module, path: Path, state: dict[str, torch.Tensor],
                 weights_filter: Callable[[str], bool] | None) -> None:
    """Load a checkpoint's weights (those `weights_filter` selects) into the model, or say in one line why they do
    not fit it."""
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
    model.load_state_dict(state, strict=False)
