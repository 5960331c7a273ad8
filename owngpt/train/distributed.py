"""One training run over several processes (torchrun): DDP or FSDP2, sharded batches, agreed decisions, and
checkpoints that load at any world size.

fit() talks to a `Parallel` and never asks for its rank: a single process gets the trivial one (every method a
no-op or the identity), torchrun's processes get one that wraps the model, gives each rank its share of every
step's micro-batches, sums what must be global (target counts, losses, validation sums), lets rank 0 decide what
depends on its clock, and gathers/broadcasts checkpoint state.

How a step is shared. A single process draws `grad_accum` micro-batches per optimizer step from one seeded
stream. Under N processes every rank follows the same stream and keeps micro-batch k when k % N == rank, so
the step sees the same batches, each rank reads only its own, the ranks' shares are disjoint and together
cover the stream, and the stream's position (the loader state) is the same on every rank and at every world
size: a checkpoint saved at 2 processes resumes at 1 or 4 on the very batches the run would have drawn next.

Checkpoints keep the one-process layout (model.safetensors + train_state.pt): rank 0 writes them, with FSDP after
gathering the full weights and optimizer state (torch.distributed.checkpoint.state_dict, the Distributed
Checkpoint state-dict API), so `chat` and `generate` read them with no process group, and any world size and
either wrapper resumes them. This assumes the full state fits in rank 0's host memory: true for every model a
single machine's CPU RAM holds, which covers what owngpt trains.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from owngpt.config import TrainConfig, parse_duration
from owngpt.errors import OwnGPTError
from owngpt.runtime import ProcessGroup, init_process_group

BYTES_PER_PARAM = 16  # fp32 weight + gradient + AdamW's two moments: what one device holds per parameter under DDP


def local_accum(grad_accum: int, world_size: int, batch_size: int, block_size: int | None = None) -> int:
    """Micro-batches per rank per optimizer step, so the global batch stays grad_accum × batch_size sequences; an
    OwnGPTError with the nearest settings that divide when it cannot."""
    if grad_accum % world_size == 0:
        return grad_accum // world_size
    lower = grad_accum // world_size * world_size
    upper = lower + world_size
    per = f" × {block_size} tokens" if block_size else ""
    options = [f"--set train.grad_accum={a} ({a * batch_size} sequences{per} per step)" for a in (lower, upper) if a > 0]
    raise OwnGPTError(
        f"train.grad_accum={grad_accum} micro-batches per step cannot be shared by {world_size} processes (each must "
        f"take the same number, so that the global batch of {grad_accum * batch_size} sequences stays what the "
        f"config says): use {' or '.join(options)}, or run {_divisors(grad_accum)} processes")


def _divisors(n: int) -> str:
    found = [str(d) for d in range(1, n + 1) if n % d == 0]
    return found[0] if len(found) == 1 else ", ".join(found[:-1]) + " or " + found[-1]


class RankBatches:
    """This rank's share of a batch stream: of each `world_size` consecutive micro-batches, the rank-th. The other
    ranks' micro-batches are skipped (their random draws made, their tokens never read), so the stream's state
    after every call is the same on all ranks."""

    def __init__(self, batches: Any, rank: int, world_size: int) -> None:
        self.inner, self.rank, self.world_size = batches, rank, world_size

    def _skip(self, n: int) -> None:
        skip = getattr(self.inner, "skip", None)
        for _ in range(n):
            skip() if skip is not None else self.inner.next_batch()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._skip(self.rank)
        batch = self.inner.next_batch()
        self._skip(self.world_size - 1 - self.rank)
        return batch

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def __getattr__(self, name: str) -> Any:  # batches_per_pass, tokens, ... of the whole stream
        return getattr(self.inner, name)


@dataclass
class Parallel:
    """A single process: nothing to share. The base of `Distributed`, which overrides each method."""

    mode: str = "none"
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def accum(self, cfg: TrainConfig, block_size: int | None = None) -> int:
        return cfg.grad_accum

    def wrap(self, model: nn.Module, amp_dtype: torch.dtype) -> nn.Module:
        return model

    def shard(self, batches: Any) -> Any:
        return batches

    def sync_gradients(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over ranks, in place."""
        return tensor

    def from_main(self, value: float) -> float:
        """Rank 0's value of a host number (its clock), the same on every rank."""
        return value

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object on every rank (what it read from a checkpoint)."""
        return obj

    def all_ok(self, error: str | None) -> None:
        """Raise `error` as an OwnGPTError on every rank if any rank had one (a failed save must stop them all)."""
        if error:
            raise OwnGPTError(error)

    def gather_objects(self, obj: Any) -> list[Any]:
        return [obj]

    def main_only(self, work: Callable[[], Any]) -> Any:
        """work() on rank 0 (reading or writing the run folder), its result there (None elsewhere). If it raised,
        every rank raises — rank 0 its own exception, the others an OwnGPTError naming it — instead of the others
        waiting in their next collective for a rank that is gone."""
        result, error = None, None
        if self.is_main:
            try:
                result = work()
            except Exception as e:  # noqa: BLE001 - shared with the other ranks, then raised again as it was
                error = e
        try:
            self.all_ok(None if error is None else f"rank 0 stopped: {error}")
        except OwnGPTError:
            if error is not None:
                raise error from None
            raise
        return result

    def share_resume(self, read: tuple) -> tuple:
        """(checkpoint path, weights, train state) that rank 0 read, on every rank that needs them."""
        return read

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The full weights on rank 0 ({} elsewhere)."""
        return model.state_dict()

    def load_model_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        model.load_state_dict(state, strict=False)

    def optimizer_state(self, model: nn.Module, optimizer: Any) -> dict:
        """The optimizer's full state in the one-process layout on rank 0 ({} elsewhere)."""
        return optimizer.state_dict()

    def load_optimizer_state(self, model: nn.Module, optimizer: Any, state: dict) -> None:
        optimizer.load_state_dict(state)

    def norm(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def close(self) -> None:
        pass


class Distributed(Parallel):
    """torchrun's processes training one model: DDP (replicated weights, averaged gradients) or FSDP2 (weights,
    gradients and optimizer state sharded across ranks)."""

    def __init__(self, group: ProcessGroup, mode: str) -> None:
        super().__init__(mode=mode, rank=group.rank, world_size=group.world_size)
        self.group = group
        self.ddp: nn.Module | None = None  # DDP's wrapper, whose reducer close() frees before the group

    def accum(self, cfg: TrainConfig, block_size: int | None = None) -> int:
        return local_accum(cfg.grad_accum, self.world_size, cfg.batch_size, block_size)

    def wrap(self, model: nn.Module, amp_dtype: torch.dtype) -> nn.Module:
        device = next(model.parameters()).device
        if self.mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            # gradients of frozen weights (LoRA) are never made: DDP buckets only those that require them; the buffers
            # (position tables) follow from the config, so they are not re-sent at every forward pass
            self.ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                               broadcast_buffers=False)
            return self.ddp
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # the mesh on the training device (by default FSDP would take the machine's GPU even for a CPU run)
        mesh = init_device_mesh(device.type, (self.world_size,))
        policy = MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32) \
            if device.type == "cuda" and amp_dtype == torch.bfloat16 else MixedPrecisionPolicy()
        for block in _blocks(model):  # each block's weights are gathered just before it runs, freed after
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)  # the rest (embeddings, final norm, head) as one root group
        return model

    def shard(self, batches: Any) -> Any:
        return None if batches is None else RankBatches(batches, self.rank, self.world_size)

    def sync_gradients(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Accumulating micro-batches: reduce gradients over ranks only on the step's last one."""
        if self.mode == "ddp":
            return contextlib.nullcontext() if sync else net.no_sync()
        net.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def from_main(self, value: float) -> float:
        import torch.distributed as dist

        box = torch.tensor([value], dtype=torch.float64)
        dist.broadcast(box, src=0, group=self.group.control)
        return float(box.item())

    def broadcast(self, obj: Any) -> Any:
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.group.control)
        return box[0]

    def all_ok(self, error: str | None) -> None:
        errors = [e for e in self.gather_objects(error) if e]
        if errors:
            raise OwnGPTError(errors[0])

    def share_resume(self, read: tuple) -> tuple:
        """DDP: every rank holds the whole state anyway, so it gets all of it. FSDP: the others get the path and the
        counters; the weights and optimizer state stay on rank 0 and reach each rank as its own shards when they
        are loaded (broadcast_from_rank0), so no rank but 0 ever holds the full state."""
        if self.mode == "ddp":
            return self.broadcast(read)
        path, state, ts = read if self.is_main else (None, {}, None)
        light = None if ts is None else {k: v for k, v in ts.items() if k != "optimizer"}
        path, light = self.broadcast((path, light))
        if self.is_main or light is None:
            return path, state, ts
        return path, {}, {**light, "optimizer": {}}

    def gather_objects(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group.control)
        return out

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        if self.mode == "ddp":
            return model.state_dict() if self.is_main else {}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_model_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        if self.mode == "ddp":
            return super().load_model_state(model, state)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True,
                                                                    strict=False))

    def optimizer_state(self, model: nn.Module, optimizer: Any) -> dict:
        if self.mode == "ddp":
            return optimizer.state_dict() if self.is_main else {}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        named = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return _by_index(named, _param_names(model, optimizer)) if self.is_main else {}

    def load_optimizer_state(self, model: nn.Module, optimizer: Any, state: dict) -> None:
        if self.mode == "ddp":
            return super().load_optimizer_state(model, optimizer, state)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        named = _by_name(state, _param_names(model, optimizer)) if self.is_main else {}
        set_optimizer_state_dict(model, optimizer, named,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))

    def norm(self, value: torch.Tensor) -> torch.Tensor:
        """FSDP's gradient norm is a DTensor: its value over all shards as a plain tensor."""
        return value.full_tensor() if hasattr(value, "full_tensor") else value

    def close(self) -> None:
        import torch.distributed as dist

        self._free_reducer()
        if self.group.created_here and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - a group broken by a dead rank: nothing left to tear down cleanly
                pass

    def _free_reducer(self) -> None:
        """Free DDP's C++ reducer now, while the process group is still registered.

        Left to the garbage collector, the reducer can be the last holder of the gloo group, and it frees it with
        the GIL held: the group's destructor then waits for its worker threads, one of which may be waiting for the
        GIL to free the tensors of a finished collective (the last broadcast), and the process hangs for ever at
        some later allocation (seen as a one-in-twenty hang after fit() returned). Freed here, the reducer is not
        the last holder; the group goes when its Python handles do, and their destructor lets go of the GIL."""
        if self.ddp is None:
            return
        self.ddp.logger = None  # it holds the reducer too (None: what DDP itself checks for)
        self.ddp.__dict__.pop("reducer", None)
        self.ddp = None


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated Transformer blocks FSDP shards one by one (model.transformer.h), else the model's children."""
    blocks = getattr(getattr(model, "transformer", None), "h", None)
    return list(blocks) if blocks is not None else [m for m in model.children() if any(True for _ in m.parameters())]


def _param_names(model: nn.Module, optimizer: Any) -> list[str]:
    """The name of each parameter in the optimizer's order (the indices of its one-process state dict)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for g in optimizer.param_groups for p in g["params"]]


def _by_index(named: dict, names: list[str]) -> dict:
    """A state dict keyed by parameter names (get_optimizer_state_dict's) in the one-process layout (indices)."""
    index = {n: i for i, n in enumerate(names)}
    return {"state": {index[n]: s for n, s in named["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in named["param_groups"]]}


def _by_name(state: dict, names: list[str]) -> dict:
    return {"state": {names[int(i)]: s for i, s in state["state"].items()},
            "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]]}


def choose_mode(cfg: TrainConfig, model: nn.Module, device: torch.device, world_size: int) -> str:
    """none for one process; else train.parallel, where auto is DDP unless the model's weights, gradients and AdamW
    state (16 bytes a parameter) would take more than half of one GPU's memory: then FSDP2."""
    if world_size <= 1:
        return "none"
    if cfg.parallel != "auto":
        mode = cfg.parallel
        if mode == "none":
            raise OwnGPTError(f"train.parallel=none, but torchrun started {world_size} processes: run one process "
                              "(without torchrun, or --nproc_per_node=1), or use train.parallel=auto, ddp or fsdp")
        if mode == "fsdp" and cfg.optimizer == "muon":
            raise OwnGPTError("train.optimizer=muon orthogonalises whole weight matrices, which FSDP splits across "
                              "ranks: use train.parallel=ddp with Muon, or train.optimizer=adamw with FSDP")
        return mode
    if device.type == "cuda" and cfg.optimizer != "muon":
        n = sum(p.numel() for p in model.parameters())
        if n * BYTES_PER_PARAM > 0.5 * torch.cuda.get_device_properties(device).total_memory:
            return "fsdp"
    return "ddp"


def setup_parallel(cfg: TrainConfig, model: nn.Module) -> Parallel:
    """The Parallel for this process: the trivial one alone, a Distributed one under torchrun (joining its
    process group on first use)."""
    device = next(model.parameters()).device
    group = init_process_group(device, cfg.dist_backend, parse_duration(cfg.dist_timeout))
    if group is None or group.world_size <= 1:
        return Parallel()
    par = Distributed(group, choose_mode(cfg, model, device, group.world_size))
    par.mode = par.broadcast(par.mode)  # rank 0's choice: nodes with other GPUs would choose otherwise
    return par


def lost_contact(error: BaseException, par: Parallel, run_dir: Any) -> OwnGPTError | None:
    """The one-line error for a collective that failed because another process died or hung, or None when
    `error` is something else."""
    import torch.distributed as dist

    comm = isinstance(error, getattr(dist, "DistError", ())) or any(
        s in str(error) for s in ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out"))
    if par.world_size <= 1 or not comm:
        return None
    from owngpt.checkpoint.format import latest_checkpoint

    last = latest_checkpoint(run_dir) if par.is_main else None
    return OwnGPTError(
        f"rank {par.rank} lost contact with the other processes (one died, or hung past train.dist_timeout): "
        f"{str(error).splitlines()[0][:200]}; run the same command again to continue"
        + (f" from {last}" if last else " from the last complete checkpoint")
        + " (--resume auto), or launch with torchrun --max-restarts=N to do it by itself")
