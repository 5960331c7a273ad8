"""What a run leaves behind for people: metrics.jsonl, TensorBoard scalars, summary.md and loss.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from owngpt.io import atomic_write_text


# Dense bf16/fp16 tensor-core peaks (no sparsity), FLOP/s, by a substring of torch.cuda.get_device_name();
# the first match wins, so the more specific names come first.
_GPU_PEAK_BF16 = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("GH200", 989e12), ("H200", 989e12),
    ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("A10G", None), ("A10", 125e12), ("RTX 4090", 165e12),  # A10G (AWS) is not the A10: peak unknown here
)


def peak_flops(device, amp_dtype) -> float | None:
    """The GPU's datasheet peak for the run's matmul dtype, the denominator of MFU; None when unknown
    (CPUs, unlisted GPUs, fp32 runs: MFU is quoted against the bf16 tensor-core peak, as nanoGPT and PaLM do)."""
    import torch

    if getattr(device, "type", None) != "cuda" or amp_dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in _GPU_PEAK_BF16 if key in name), None)


class MetricsLogger:
    """Appends one JSON object per record to RUN/metrics.jsonl and mirrors scalars to TensorBoard (RUN/tb).

    On resume, records past the resumed step (written by the killed run after its last checkpoint) are
    dropped first, so the file reads like one uninterrupted run.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        if resume_step is None:
            atomic_write_text(self.path, "")
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: JSONL is enough
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=resume_step)

    def log(self, step: int, kind: str, **values: Any) -> None:
        """kind: "train" or "val"; values: plain numbers (loss, lr, tokens_per_s, ...)."""
        record = {"step": step, "kind": kind, **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl; a line cut short by a crash is skipped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _train_loss_near(train: list[tuple[int, float]], step: int, window: int) -> float | None:
    """Mean train loss of the records in (step - window, step]: a smoothed value at `step`."""
    near = [loss for s, loss in train if step - window < s <= step and math.isfinite(loss)]
    return sum(near) / len(near) if near else None


def overfitting(records: list[dict], tolerance: float = 0.005) -> dict | None:
    """Where validation loss turned up while training loss kept falling, from a run's metrics records; None if not.

    Flagged when the last two validations (at least) after the best one are both above best * (1 + tolerance) and
    the training loss (the mean of the records in the interval before each) is lower at the last validation than
    at the best one. Returns the best step and both losses at the best and at the last validation."""
    val = [(r["step"], r["loss"]) for r in records if r.get("kind") == "val" and math.isfinite(r.get("loss", math.nan))]
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and "loss" in r]
    if len(val) < 3 or not train:
        return None
    b = min(range(len(val)), key=lambda i: val[i][1])
    after = val[b + 1:]
    best_step, best = val[b]
    if len(after) < 2 or not all(loss > best * (1 + tolerance) for _, loss in after[-2:]):
        return None
    window = max(1, val[1][0] - val[0][0])
    last_step, last = val[-1]
    train_best, train_last = _train_loss_near(train, best_step, window), _train_loss_near(train, last_step, window)
    if train_best is None or train_last is None or not train_last < train_best:
        return None
    return {"step": best_step, "val_best": best, "val_last": last, "last_step": last_step,
            "train_at_best": train_best, "train_last": train_last}


def describe_overfitting(found: dict) -> str:
    return (f"val loss rose from {found['val_best']:.4f} (step {found['step']:,}) to {found['val_last']:.4f} (step "
            f"{found['last_step']:,}) while train loss fell from {found['train_at_best']:.4f} to "
            f"{found['train_last']:.4f}: overfitting from step {found['step']:,}; best/ keeps that step, and "
            "train.patience=N stops a run after N validations without improvement")


def plot_losses(run_dir: str | Path) -> Path | None:
    """RUN/loss.png: train and validation loss against step (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and "loss" in r]
    val = [(r["step"], r["loss"]) for r in records if r.get("kind") == "val" and "loss" in r]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), label="val", marker="o", markersize=3)
    found = overfitting(records)
    if found:
        ax.axvline(found["step"], color="red", linestyle="--", linewidth=1, label="overfitting from here")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = run_dir / "loss.png"
    fig.savefig(out)
    plt.close(fig)
    return out


def _human_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def write_summary(run_dir: str | Path, info: dict[str, Any]) -> Path:
    """RUN/summary.md: the few numbers a person wants after a run, then every field for completeness."""
    run_dir = Path(run_dir)
    best = info.get("best_val_loss")
    records = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    found = overfitting(records)
    lines = [
        f"# Training run: {run_dir.name}",
        "",
        "| | |",
        "|---|---|",
        f"| stopped because | {info.get('stopped_reason', '')} |",
        f"| optimizer steps | {info.get('steps', 0):,} |",
        f"| training tokens | {info.get('tokens', 0):,} |",
        f"| wall time | {_human_time(info.get('seconds', 0.0))} |",
        f"| throughput | {info.get('tokens_per_s', 0.0):,.0f} tokens/s"
        + (f", MFU {100 * info['mfu']:.1f}% |" if info.get("mfu") else " |"),
        f"| best val loss | {best:.4f} (step {info.get('best_step')}) |" if best is not None and math.isfinite(best)
        else "| best val loss | not evaluated |",
        f"| last train loss | {info.get('last_train_loss', float('nan')):.4f} |",
        *([f"| overfitting | {describe_overfitting(found)} |"] if found else []),
        f"| parameters | {info.get('params', 0):,} ({info.get('trainable_params', 0):,} trained) |",
        f"| skipped non-finite steps | {info.get('nonfinite_steps', 0)} |",
        f"| device | {info.get('device', '')} ({info.get('dtype', '')}, compile: {info.get('compiled', False)}"
        + (f"; {info['parallel']}) |" if info.get("parallel") else ") |"),
        "",
        "Files: `config.yaml` (resolved settings), `metrics.jsonl`, `tb/` (TensorBoard), `loss.png`, "
        "`best/` and `checkpoints/` (load with `owngpt.checkpoint.format.load_model`).",
        "",
    ]
    out = run_dir / "summary.md"
    atomic_write_text(out, "\n".join(lines))
    return out
