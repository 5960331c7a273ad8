"""fit(): the one training loop, shared by pretraining and chat fine-tuning (SFT, LoRA).

One optimizer step = `grad_accum` micro-batches (each loss scaled by 1/grad_accum so the gradient is the
mean over all of them), gradient clipping, then AdamW with the scheduled learning rate. Around it:
validation and best-checkpointing, early stopping, step/token/wall-time budgets, skipping non-finite
steps, metrics, and exact resume — a run killed at any moment and resumed from its last checkpoint draws
the same batches and dropout masks and so produces the same losses as a run that was never interrupted.

The host never waits for the device inside a step: each step's loss and gradient norm travel back by a
non-blocking copy and are read while the next step runs (resolve()); logging, the progress bar and the
non-finite count follow one step behind, and evaluations and checkpoints first read every queued step.

Under torchrun the same loop runs in every process through a `Parallel` (train/distributed.py): each rank takes
its share of every step's micro-batches, losses and counts are summed over ranks, rank 0's clock decides
time budgets, and only rank 0 logs, draws progress and writes files.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from owngpt.checkpoint.format import latest_checkpoint
from owngpt.config import TrainConfig, parse_duration
from owngpt.allocator import keep_freed_memory
from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text, output_dir
from owngpt.runtime import autocast, configure, dtype_reason
from owngpt.train.distributed import Parallel, lost_contact, setup_parallel
from owngpt.train.metrics import MetricsLogger, peak_flops, plot_losses, read_metrics, write_summary
from owngpt.train.optim import lr_at, make_optimizer
from owngpt.train.progress import StepValues, bar_stats, clock, progress_bar
from owngpt.train.resume import CheckpointedRun


@dataclass
class FitResult:
    """What fit() did; the same numbers are in RUN/summary.md."""

    best_val_loss: float
    steps: int
    tokens: int
    stopped_reason: str
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    last_train_loss: float = float("nan")
    last_val_loss: float = float("nan")
    best_step: int | None = None
    nonfinite_steps: int = 0
    resumed_from: str | None = None
    run_dir: str = ""
    val_history: list[tuple[int, float]] = field(default_factory=list)


def _next_fn(batches: Any) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(batches, "next_batch"):
        return batches.next_batch
    it = iter(batches)
    return lambda: next(it)


def _oom_error(cfg: TrainConfig) -> OwnGPTError:
    return OwnGPTError(
        f"GPU out of memory with batch_size={cfg.batch_size}, grad_accum={cfg.grad_accum}: lower train.batch_size "
        f"(e.g. --set train.batch_size={max(1, cfg.batch_size // 2)}) and raise train.grad_accum "
        f"(--set train.grad_accum={cfg.grad_accum * 2}) to keep the same tokens per step, or use a shorter "
        "model.block_size or a smaller model"
    )


class _NoLogger:
    """Ranks other than 0 log nothing."""

    def log(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


class _Trainer(CheckpointedRun):
    """The state of one fit() call; split into methods only to keep each piece readable (saving and resuming: the
    CheckpointedRun part, train/resume.py)."""

    def __init__(self, model: nn.Module, train_batches, val_batches, cfg: TrainConfig, run_dir: Path,
                 run_config: dict, tokenizer, weights_filter, quiet: bool,
                 echo: Callable[[str], None] | None = None, par: Parallel | None = None,
                 on_eval: Callable[[int, float], bool | str] | None = None) -> None:
        self.raw_model, self.cfg, self.run_dir = model, cfg, run_dir
        self.on_eval = on_eval
        self.par = par = par or Parallel()
        self.echo = echo if par.is_main else None
        self.run_config, self.tokenizer, self.weights_filter = run_config, tokenizer, weights_filter
        self.quiet = quiet or not par.is_main
        self.device = next(model.parameters()).device
        self.autocast, self.amp_dtype = autocast(self.device, cfg.dtype)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        if self.scaler is not None and par.world_size > 1:
            raise OwnGPTError("train.dtype=float16 needs a loss scaler, which owngpt does not run across processes: "
                              "use train.dtype=bfloat16 (or auto) under torchrun")
        configure(self.device, cfg.threads)
        # the micro-batches this rank runs per step: grad_accum shared by the ranks, so the global batch stays
        self.accum = par.accum(cfg, getattr(getattr(model, "cfg", None), "block_size", None))
        self.train_batches, self.val_batches = par.shard(train_batches), par.shard(val_batches)
        self.net = par.wrap(model, self.amp_dtype)  # what the forward pass runs through (DDP's wrapper, FSDP's model)
        if par.rank > 0:  # each rank its own dropout masks; rank 0 keeps the stream a single process would use
            torch.manual_seed(cfg.seed + par.rank)
        self.optimizer = make_optimizer(model, cfg)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        # fused AdamW skips a step by itself when told so on the device (its CPU and CUDA kernels read found_inf;
        # MPS's ignores it); other optimizers and devices need the host to decide
        self.on_device_skip = (self.scaler is None and bool(self.optimizer.defaults.get("fused"))
                               and self.device.type in ("cpu", "cuda"))
        self.last_loss = float("nan")
        use_compile = cfg.compile == "on" or (cfg.compile == "auto" and self.device.type == "cuda")
        # compiled together, the forward and the loss fuse: the fp32 upcast of the (B, T, vocab) logits and the
        # log-softmax never materialise as separate tensors (on a GPU the largest memory traffic of a small model)
        self.forward_loss = torch.compile(self._forward_loss) if use_compile else self._forward_loss
        self.compiled = use_compile
        # MFU only for full training: with frozen weights (LoRA) 6N overstates the work done
        full = all(p.requires_grad for p in model.parameters())
        self.flops_per_token = model.flops_per_token() if full and hasattr(model, "flops_per_token") else None
        self.peak_flops = peak_flops(self.device, self.amp_dtype)
        self.next_train = _next_fn(self.train_batches)
        self.val_start = (self.val_batches.state_dict() if self.val_batches is not None
                          and hasattr(self.val_batches, "state_dict") else None)
        # counters, restored on resume
        self.step = 0
        self.tokens = 0
        self.best_val = float("inf")
        self.best_step: int | None = None
        self.bad_evals = 0
        self.nonfinite_in_row = 0
        self.nonfinite_total = 0
        self.elapsed_before = 0.0  # wall time spent by earlier (killed) sessions of this run
        self.last_saved_step = -1
        self.val_history: list[tuple[int, float]] = []
        self.resumed_from: str | None = None
        self.expected_steps = 10**9  # the step the run is expected to end at (the lr schedule's horizon)

    # ------------------------------------------------------------------ steps

    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        logits = self.net(x)  # (B, T, V)
        # fp32 softmax: bf16 logits lose ~2 digits, which shows up as a noisy, biased loss
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1,
                               reduction=reduction)

    def loss_of(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        with self.autocast:
            return self.forward_loss(x, y, reduction)

    def train_step(self, lr: float) -> StepValues:
        """Queue one optimizer step; returns its loss and gradient norm, read by the host later (resolve()).

        A step whose loss (or, with clipping, gradient norm) is not finite leaves the weights and the optimizer
        state untouched. With fused AdamW and no loss scaler that decision stays on the device (the optimizer's
        found_inf input, the one GradScaler uses), so a GPU step never waits for the host; otherwise the host
        reads the loss first, which on a CPU costs nothing."""
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        # the step's loss is the mean over all its target tokens, not the mean of the micro-batches' means: with
        # masked targets (chat fine-tuning: assistant tokens only) micro-batches hold different numbers of them.
        # Under torchrun the count is over every rank's micro-batches, and each rank's loss is scaled by the world
        # size because DDP and FSDP average the ranks' gradients: the sum is then the one-process step's gradient.
        par = self.par
        batches = [self.next_train() for _ in range(self.accum)]
        targets = par.sum_(sum((y != -1).sum() for _x, y in batches)).clamp(min=1)
        total = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(batches):
            with par.sync_gradients(self.net, sync=i == len(batches) - 1):
                scaled = self.loss_of(x, y, reduction="sum") / targets * par.world_size
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total += scaled.detach()
            self.tokens += x.numel() * par.world_size
        loss = par.sum_(total) / par.world_size
        if self.on_device_skip:
            norm = (par.norm(torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip, foreach=True)) if cfg.grad_clip > 0
                    else torch.full((), float("nan"), device=self.device))
            bad = ~torch.isfinite(loss)
            if cfg.grad_clip > 0:  # finite loss, inf gradient: also skip
                bad |= ~torch.isfinite(norm)
            self.optimizer.found_inf = bad.float()
            self.optimizer.step()
            del self.optimizer.found_inf
            self.optimizer.zero_grad(set_to_none=True)
            loss = torch.where(bad & torch.isfinite(loss), float("inf"), loss)  # skipped for its gradient: inf, as below
            return StepValues.queue(self.step + 1, lr, self.tokens, loss, norm)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            return StepValues(self.step + 1, lr, self.tokens, loss_value, float("nan"))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = (float(par.norm(torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip, foreach=True)))
                if cfg.grad_clip > 0 else float("nan"))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif cfg.grad_clip > 0 and not math.isfinite(norm):  # finite loss, inf gradient: also skip
            loss_value = float("inf")
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepValues(self.step + 1, lr, self.tokens, loss_value, norm)

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss per target token over `eval_batches` validation batches — the same batches every time, shared
        by the ranks as training's are. A rank left without a batch of its own in the last round still runs one
        (FSDP gathers weights in every rank's forward pass) and counts nothing from it."""
        if self.val_start is not None:
            self.val_batches.load_state_dict(self.val_start)
        next_val = _next_fn(self.val_batches)
        self.raw_model.eval()
        sums = torch.zeros(2, device=self.device, dtype=torch.float64)  # loss, targets
        # at most one pass over a fixed validation set (packed conversations): no row counted twice
        n = min(max(1, self.cfg.eval_batches), getattr(self.val_batches, "batches_per_pass", 10**9))
        world, rank = self.par.world_size, self.par.rank
        for j in range(-(-n // world)):
            x, y = next_val()
            counted = float(j * world + rank < n)
            sums[0] += self.loss_of(x, y, reduction="sum").double() * counted
            sums[1] += (y != -1).sum() * counted
        self.raw_model.train()
        loss_sum, count = self.par.sum_(sums).tolist()
        return loss_sum / max(1.0, count)

    # ------------------------------------------------------------------ the loop

    def horizon(self, elapsed: float, time_budget: float, tokens_per_step: int) -> int:
        """Steps the lr schedule decays over: the step budget, or the step the token/time budget will end at."""
        ends = []
        if self.cfg.max_steps > 0:
            ends.append(self.cfg.max_steps)
        if self.cfg.max_tokens > 0:
            ends.append(math.ceil(self.cfg.max_tokens / tokens_per_step))
        if time_budget > 0 and self.step >= 10 and elapsed > 0:  # estimated from the pace so far
            ends.append(max(self.step + 1, int(self.step * time_budget / elapsed)))
        return min(ends) if ends else max(self.cfg.warmup_steps + 1, 10**9)

    def run(self) -> FitResult:
        cfg = self.cfg
        time_budget = self.time_budget = parse_duration(cfg.max_time)
        if cfg.max_steps <= 0 and cfg.max_tokens <= 0 and time_budget <= 0:
            raise OwnGPTError("no training budget: set train.max_steps, train.max_tokens or train.max_time (e.g. --time 10m)")
        self.resume()
        logger = (MetricsLogger(self.run_dir, cfg.tensorboard, resume_step=self.step if self.resumed_from else None)
                  if self.par.is_main else _NoLogger())
        start = self.started = time.perf_counter()
        start_tokens, start_step = self.tokens, self.step
        self.paused = 0.0  # seconds spent evaluating and saving: left out of tokens/s
        self.interval = (start, self.tokens, 0.0)  # where the current tokens/s window began: time, tokens, paused
        tokens_per_step = self.tokens // self.step if self.step else None  # known again after a resume
        # a resumed run keeps its last validation until it makes another (a finished run resumed makes none)
        done = self.val_history and self.val_history[-1][0] == self.step
        last_val = self.val_history[-1][1] if done else float("nan")
        reason = ""
        pending: list[StepValues] = []  # queued steps whose numbers the host has not read yet
        self.raw_model.train()
        progress = progress_bar(self.quiet)
        try:
            with progress:
                task = progress.add_task("training", total=cfg.max_steps or None, completed=self.step, stats="",
                                         eta=clock(None))
                report = functools.partial(self.resolve, pending, logger=logger, progress=progress, task=task)
                while True:
                    # rank 0's clock for everything that depends on it (the time budget, the lr horizon): ranks that
                    # disagreed by a millisecond would stop at different steps or use different learning rates
                    elapsed = self.par.from_main(self.elapsed_before + time.perf_counter() - start)
                    if cfg.max_steps > 0 and self.step >= cfg.max_steps:
                        reason = f"reached max_steps={cfg.max_steps}"
                    elif cfg.max_tokens > 0 and self.tokens >= cfg.max_tokens:
                        reason = f"reached max_tokens={cfg.max_tokens:,}"
                    elif time_budget > 0 and elapsed >= time_budget:
                        reason = f"reached max_time={cfg.max_time}"
                    elif stop := self.early_stop():  # an early-stopped run, resumed: finished
                        reason = stop
                    if reason:
                        break
                    tok0 = self.tokens
                    self.expected_steps = self.horizon(elapsed, time_budget, tokens_per_step or 1)
                    lr = lr_at(self.step, cfg, self.expected_steps)
                    pending.append(self.train_step(lr))
                    tokens_per_step = tokens_per_step or (self.tokens - tok0)
                    self.step += 1
                    evaluate_now = cfg.eval_interval > 0 and self.step % cfg.eval_interval == 0 and self.val_batches is not None
                    save_now = cfg.save_interval > 0 and self.step % cfg.save_interval == 0
                    # read the step before this one (the device is busy with this one); read this one too before an
                    # evaluation or a save, which must see the weights of a finished, finite step
                    reason = report(keep=0 if evaluate_now or save_now or cfg.max_nonfinite <= 1 else 1)
                    if reason:
                        break
                    if not (evaluate_now or save_now) or self.nonfinite_in_row:
                        continue  # nothing due, or this step was skipped: nothing new to evaluate or save
                    paused_at = time.perf_counter()
                    if evaluate_now:
                        last_val = self.evaluate()
                        improved = self.record_val(last_val, logger, self.elapsed_before + time.perf_counter() - start)
                        if cfg.save_interval == 0 or save_now or improved:
                            self.save(last_val, improved, self.elapsed_before + time.perf_counter() - start)
                        reason = self.early_stop()
                        if not reason and self.on_eval is not None:
                            reason = self.ask_caller(last_val)
                    else:
                        self.save(None, False, self.elapsed_before + time.perf_counter() - start)
                    self.paused += time.perf_counter() - paused_at
                    if reason:
                        break
                late = report(keep=0)  # steps still queued when a budget ended
                if late and not reason.startswith("diverged"):
                    reason = late
                train_time = time.perf_counter() - start - self.paused
                evaluated = bool(self.val_history) and self.val_history[-1][0] == self.step
                if self.val_batches is not None and not reason.startswith(("early", "diverged")) and not evaluated:
                    last_val = self.evaluate()
                    improved = self.record_val(last_val, logger, self.elapsed_before + time.perf_counter() - start)
                    self.save(last_val, improved, self.elapsed_before + time.perf_counter() - start)
                elif self.step != self.last_saved_step and not reason.startswith("diverged"):
                    self.save(None, False, self.elapsed_before + time.perf_counter() - start)
        except torch.cuda.OutOfMemoryError:
            raise _oom_error(cfg) from None
        finally:
            logger.close()
        seconds = time.perf_counter() - start
        tokens_per_s = (self.tokens - start_tokens) / max(1e-9, train_time)
        last_loss = self.last_loss
        if self.step == start_step and self.step > 0 and self.par.is_main:  # a finished run resumed: its last figures
            last = next((r for r in reversed(read_metrics(self.run_dir / "metrics.jsonl")) if r["kind"] == "train"), {})
            last_loss, tokens_per_s = last.get("loss", last_loss), last.get("tokens_per_s", tokens_per_s)
        result = FitResult(
            best_val_loss=self.best_val, steps=self.step, tokens=self.tokens, stopped_reason=reason, seconds=seconds,
            tokens_per_s=tokens_per_s, last_train_loss=last_loss,
            last_val_loss=last_val, best_step=self.best_step, nonfinite_steps=self.nonfinite_total,
            resumed_from=self.resumed_from, run_dir=str(self.run_dir), val_history=list(self.val_history),
        )
        self.finish(result, self.step - start_step)
        return result

    def early_stop(self) -> str:
        """Why the run stops here for want of progress ("" when it goes on): train.patience validations in a row
        without a better val loss."""
        if self.cfg.patience > 0 and self.bad_evals >= self.cfg.patience:
            return f"early stopping: val loss did not improve for {self.cfg.patience} evaluations"
        return ""

    def ask_caller(self, val: float) -> str:
        """on_eval(step, val_loss) on rank 0, its answer shared by every rank: "" to go on, else why the run stops
        (the caller's own words when it answered with a string)."""
        answer = self.par.broadcast(self.par.main_only(lambda: self.on_eval(self.step, val)))
        if not answer:
            return ""
        return answer if isinstance(answer, str) else f"stopped by the caller after the validation at step {self.step}"

    def resolve(self, pending: list[StepValues], *, keep: int, logger: MetricsLogger, progress, task) -> str:
        """Read queued steps' numbers, oldest first, until `keep` remain — all of them during a run of non-finite
        steps, so that the max_nonfinite-th stops the run before another step is taken: count non-finite
        (skipped) steps, log every log_interval-th step and move the progress bar. Returns why to stop ("" to go
        on): max_nonfinite non-finite steps in a row."""
        cfg = self.cfg
        while pending and (len(pending) > keep or self.nonfinite_in_row > 0):
            v = pending.pop(0).read()
            if not math.isfinite(v.loss):
                self.nonfinite_in_row += 1
                self.nonfinite_total += 1
                logger.log(v.step, "nonfinite", loss=str(v.loss), lr=v.lr)
                if self.nonfinite_in_row >= cfg.max_nonfinite:
                    prev = latest_checkpoint(self.run_dir)
                    return (f"diverged: loss or gradient was NaN/inf for {self.nonfinite_in_row} steps in a row "
                            f"(step {v.step}); lower train.lr (now {cfg.lr:g}), keep train.grad_clip on, and "
                            + (f"resume from {prev}" if prev else "start again"))
                continue
            self.nonfinite_in_row = 0
            self.last_loss = v.loss
            if v.step % max(1, cfg.log_interval) == 0 or v.step == 1:
                now = time.perf_counter()
                t0, tokens0, paused0 = self.interval
                tps = (v.tokens - tokens0) / max(1e-9, now - t0 - (self.paused - paused0))
                self.interval = (now, v.tokens, self.paused)
                logger.log(v.step, "train", loss=v.loss, lr=v.lr, grad_norm=v.norm, tokens=v.tokens, tokens_per_s=tps,
                           elapsed=self.elapsed_before + now - self.started, **self.mfu(tps))
                # under a token or time budget the total is the step that budget is expected to end at (see horizon)
                total = self.expected_steps if self.expected_steps < 10**9 else None
                progress.update(task, total=total, completed=v.step, stats=bar_stats(v.loss, tps),
                                eta=clock(self.seconds_left(v.step, v.tokens, tps)))
        return ""

    def seconds_left(self, step: int, tokens: int, tokens_per_s: float) -> float | None:
        """Seconds until the run is expected to end: the nearer of the time budget's end and, at the current pace,
        the step the lr schedule decays over (the step or token budget); None without either."""
        ends = []
        if self.time_budget > 0:
            ends.append(self.time_budget - (self.elapsed_before + time.perf_counter() - self.started))
        if self.expected_steps < 10**9 and step > 0 and tokens_per_s > 0:
            ends.append((self.expected_steps - step) * (tokens / step) / tokens_per_s)
        return max(0.0, min(ends)) if ends else None

    def mfu(self, tokens_per_s: float) -> dict[str, float]:
        """{"mfu": model FLOPs utilisation} where the GPU's peak is known: achieved training FLOP/s (6N + attention
        per token, PaLM's count) over the datasheet bf16 peak; {} elsewhere."""
        if not self.flops_per_token or not self.peak_flops:
            return {}
        return {"mfu": tokens_per_s * self.flops_per_token / (self.peak_flops * self.par.world_size)}

    def record_val(self, val: float, logger: MetricsLogger, elapsed: float) -> bool:
        self.val_history.append((self.step, val))
        improved = math.isfinite(val) and val < self.best_val
        if improved:
            self.best_val, self.best_step, self.bad_evals = val, self.step, 0
        else:
            self.bad_evals += 1
        logger.log(self.step, "val", loss=val, best=self.best_val, tokens=self.tokens, elapsed=elapsed)
        return improved

    def finish(self, result: FitResult, steps_this_session: int) -> None:
        if not self.par.is_main:
            return
        plot_losses(self.run_dir)
        n_params = sum(p.numel() for p in self.raw_model.parameters())
        n_train = sum(p.numel() for p in self.raw_model.parameters() if p.requires_grad)
        write_summary(self.run_dir, {
            **asdict(result), "best_val_loss": result.best_val_loss if math.isfinite(result.best_val_loss) else None,
            "seconds": self.elapsed_before + result.seconds, "params": n_params, "trainable_params": n_train,
            "device": str(self.device), "dtype": dtype_reason(self.device, self.cfg.dtype, self.amp_dtype),
            "compiled": self.compiled,
            **({"parallel": f"{self.par.mode} over {self.par.world_size} processes"} if self.par.world_size > 1 else {}),
            **self.mfu(result.tokens_per_s),
        })


def fit(
    model: nn.Module,
    train_batches,
    val_batches,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    run_config: dict,
    tokenizer=None,
    weights_filter: Callable[[str], bool] | None = None,
    quiet: bool = False,
    echo: Callable[[str], None] | None = None,
    on_eval: Callable[[int, float], bool | str] | None = None,
) -> FitResult:
    """Train `model` (already on its device) on `train_batches` until a budget ends; see the module docstring.

    train_batches / val_batches: objects with `next_batch() -> (x, y)` (or iterables of batches) and
    `state_dict()` / `load_state_dict()`; y == -1 marks positions without loss. Writes into run_dir:
    config.yaml, metrics.jsonl, tb/, checkpoints/, best/, summary.md, loss.png.
    weights_filter(name) selects which parameters checkpoints hold (LoRA: only the adapters).
    echo(line), when given, is told what the run does before its first step: which checkpoint it resumes from.
    on_eval(step, val_loss), when given, is called after each periodic validation (and its checkpoint); a truthy
    answer ends the run there as a finished run ends (saved, summary written), the answer as the stopped reason
    when it is a string (a hyperparameter sweep pruning a trial).
    """
    from owngpt.model.registry import arch_of, require_trainable

    require_trainable(arch_of(model), "fit()")  # the n-gram baseline is counted (owngpt.train.ngram)
    keep_freed_memory()  # a library caller gets the CLI's allocator setting too
    run_dir = output_dir(run_dir)
    par = setup_parallel(cfg, model)  # under torchrun: joins the process group; alone: the trivial Parallel
    try:
        par.main_only(lambda: atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(
            _plain(run_config), sort_keys=False, allow_unicode=True)))
        trainer = _Trainer(model, train_batches, val_batches, cfg, run_dir, run_config, tokenizer, weights_filter,
                           quiet, echo, par, on_eval)
        return trainer.run()
    except RuntimeError as e:
        lost = lost_contact(e, par, run_dir)
        if lost is None:
            raise
        raise lost from e
    finally:
        par.close()


def _plain(obj: Any) -> Any:
    """Dataclasses, paths and tuples as YAML-safe builtins."""
    if hasattr(obj, "__dataclass_fields__"):
        return _plain(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
