"""What the host reads back of each training step (without waiting for the device), and the progress bar."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class StepValues:
    """One optimizer step's loss and gradient norm on their way to the host. On a GPU they come back by a
    non-blocking copy that the stream runs right after the step, so reading them while the next step is
    queued waits for this step only, never for the queue to drain."""

    step: int
    lr: float
    tokens: int  # tokens seen after this step
    loss: float = float("nan")
    norm: float = float("nan")
    host: torch.Tensor | None = None  # [loss, norm] until read()
    ready: Any = None  # CUDA event recorded after the copy

    @classmethod
    def queue(cls, step: int, lr: float, tokens: int, loss: torch.Tensor, norm: torch.Tensor) -> "StepValues":
        values = torch.stack([loss.float(), norm.float()])
        out = cls(step, lr, tokens, host=values)
        if values.is_cuda:
            out.host = torch.empty(2, pin_memory=True)
            out.host.copy_(values, non_blocking=True)
            out.ready = torch.cuda.Event()
            out.ready.record()
        return out

    def read(self) -> "StepValues":
        if self.host is not None:
            if self.ready is not None:
                self.ready.synchronize()
            self.loss, self.norm = self.host.tolist()
            self.host = self.ready = None
        return self


def clock(seconds: float | None) -> str:
    """0:03:07 for the progress bar's ETA; -:--:-- while unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def bar_stats(loss: float, tokens_per_s: float) -> str:
    """The bar's "loss 3.4625 11,076 tok/s"; empty until a step has been read (a resumed run that is already
    finished shows no made-up figures)."""
    return f"loss {loss:.4f} {tokens_per_s:,.0f} tok/s" if math.isfinite(loss) else ""


def progress_bar(quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}", markup=False),
        TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
        disable=quiet, transient=False, refresh_per_second=4,
    )
