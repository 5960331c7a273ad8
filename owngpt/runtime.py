"""Where and how torch runs: the device, mixed precision (autocast), CPU threads and TF32, and RNG states.

Every stage asks here: training (`fit`), loading a checkpoint for chat or evaluation (`device="auto"`), and
torch.distributed's process group when a command runs under `torchrun` (rank, world size, backend). RNG states
are captured as plain tensors and ints, so a checkpoint's train_state.pt loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from owngpt.config import DEVICE_PATTERN
from owngpt.errors import OwnGPTError


CUDA_WHEELS = "pip install torch --index-url https://download.pytorch.org/whl/cu126"
INSTALL_GUIDE = "https://pytorch.org/get-started/locally/"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; cpu, cuda, cuda:N or mps as asked, once it is there: a device
    this PyTorch build or machine lacks is an OwnGPTError that says which build is installed and what to do."""
    if isinstance(name, torch.device):
        return _check_available(name)
    if name == "auto":
        if torch.cuda.is_available():
            return _check_available(torch.device("cuda"))
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not DEVICE_PATTERN.fullmatch(str(name)):
        raise OwnGPTError(f"device {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OwnGPTError(f"device {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    return _check_available(device)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def torch_build() -> str:
    """This PyTorch in words: 'PyTorch 2.6.0+cpu (a CPU-only build)', 'PyTorch 2.6.0+cu126 (built with CUDA 12.6)'."""
    if torch.version.cuda:
        built = f"built with CUDA {torch.version.cuda}"
    elif getattr(torch.version, "hip", None):
        built = f"built with ROCm {torch.version.hip}"
    else:
        built = "a CPU-only build"
    return f"PyTorch {torch.__version__} ({built})"


def _check_available(device: torch.device) -> torch.device:
    """`device` if this machine and PyTorch build can run on it, else an OwnGPTError in one line. Under torchrun a
    bare "cuda" is this process's own GPU, cuda:LOCAL_RANK, as every launcher of one process per GPU expects."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    use_cpu = "or use the CPU (--device cpu; to train: --set train.device=cpu)"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            if not (torch.version.cuda or getattr(torch.version, "hip", None)):
                raise OwnGPTError(f"device {str(device)!r} needs a CUDA build of PyTorch, but {torch_build()} is "
                                  f"installed: install one (e.g. `{CUDA_WHEELS}`; see {INSTALL_GUIDE}), {use_cpu}")
            raise OwnGPTError(f"device {str(device)!r}: {torch_build()} finds no usable GPU; check the driver "
                              f"(`nvidia-smi`) and CUDA_VISIBLE_DEVICES, {use_cpu}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            visible = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise OwnGPTError(f"device {str(device)!r} does not exist: this machine has {count} CUDA GPU"
                              f"{'s' if count != 1 else ''} ({visible}); use one of those, or auto")
    elif device.type == "mps" and not _mps_available():
        if sys.platform != "darwin":
            raise OwnGPTError(f"device 'mps' (Apple's GPU backend) needs an Apple silicon Mac with macOS, and this is "
                              f"{sys.platform}: use auto, cuda or cpu")
        if not torch.backends.mps.is_built():
            raise OwnGPTError(f"device 'mps': {torch_build()} was built without MPS; install the standard macOS wheel "
                              f"(`pip install torch`, see {INSTALL_GUIDE}), {use_cpu}")
        raise OwnGPTError(f"device 'mps' is not available: MPS needs an Apple silicon Mac (M1 or later) with macOS "
                          f"12.3 or later ({torch_build()}); {use_cpu}")
    return device


def cpu_bf16_support() -> str | None:
    """How this CPU computes bf16 dot products natively: "amx" (AMX tiles: Intel Sapphire Rapids and later),
    "avx512_bf16" (AMD Zen 4/5, Intel Cooper Lake and later), or None (AVX2-only or AVX-512 without bf16, where
    bf16 is emulated and slower than fp32). Read from the CPU's own feature flags (PyTorch's probes of cpuid), not
    guessed from the vendor."""
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "amx"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "avx512_bf16"
    return None


def cpu_has_bf16_matmul() -> bool:
    """True when the CPU has native bf16 (AMX or avx512_bf16): bf16 autocast then trains faster than fp32 (AMX:
    2.5-6x faster matmuls; avx512_bf16: 1.3x the tokens/s on the tiny-cpu recipe, issue #15)."""
    return cpu_bf16_support() is not None


def cuda_has_bf16(device: torch.device) -> bool:
    """True for GPUs that compute bf16 natively (compute capability 8.0 and later: Ampere, Ada, Hopper, ...); older
    ones (V100, T4) emulate it, slower than fp32."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU of compute capability 8+, or a CPU with AMX or
    avx512_bf16. The one rule behind `auto` for training (autocast) and for generation (inference_dtype)."""
    return (device.type == "cuda" and cuda_has_bf16(device)) or (device.type == "cpu" and cpu_has_bf16_matmul())


def autocast(device: torch.device, dtype: str) -> tuple[contextlib.AbstractContextManager, torch.dtype]:
    """(context, dtype) for mixed precision: bf16 autocast by default on CUDA GPUs that support it and on CPUs with
    native bf16 (AMX or avx512_bf16; no loss scaling needed with bf16); fp32 elsewhere unless asked."""
    if dtype == "auto":
        dtype = "bfloat16" if native_bf16(device) else "float32"
    if dtype == "float32":
        return contextlib.nullcontext(), torch.float32
    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=torch_dtype), torch_dtype


INFERENCE_DTYPES = ("auto", "float32", "bfloat16")


def inference_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """The dtype a model generates in: auto = bf16 weights on CPUs with native bf16 (AMX or avx512_bf16) and on
    CUDA GPUs that support it, fp32 elsewhere (on AVX2-only CPUs bf16 is emulated and slower). Decoding reads every
    weight once per token, so bf16 weights halve the bytes a token costs; the bf16 logits are cast to fp32
    for the sampler's arithmetic."""
    if requested not in INFERENCE_DTYPES:
        raise OwnGPTError(f"--dtype must be {', '.join(INFERENCE_DTYPES)}, not {requested!r}")
    if requested == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return torch.bfloat16 if requested == "bfloat16" else torch.float32


def dtype_reason(device: torch.device, requested: str, chosen: torch.dtype) -> str:
    """Why a run computes in `chosen`, for its summary: 'bfloat16 (auto: the CPU has avx512_bf16)'."""
    name = str(chosen).replace("torch.", "")
    if requested != "auto":
        return f"{name} (asked for)"
    if device.type == "cpu":
        native = cpu_bf16_support()
        return f"{name} (auto: the CPU has {native})" if native else f"{name} (auto: the CPU has no native bf16)"
    return f"{name} (auto)"


def configure(device: torch.device, threads: int = 0) -> None:
    """CPU threads for torch (0 = torch's default) and TF32 matmuls on CUDA (~free speed on Ampere+)."""
    if threads > 0:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def capture_rng_state() -> dict[str, Any]:
    """torch / numpy / python / CUDA RNG states as tensors and ints (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- torch.distributed


def launched_rank() -> int:
    """This process's rank: the process group's once one exists, else as torchrun set it (RANK), 0 when alone. Known
    before any process group exists, so the CLI can keep ranks other than 0 quiet from its first line."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def launched_world_size() -> int:
    """The number of processes torchrun started for this run (WORLD_SIZE), 1 when not launched by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@dataclass
class ProcessGroup:
    """This process's place in a torchrun job. `control` is a gloo group for the host-side agreements (stop now?
    how long has the run taken?) so that they never make a GPU wait; on CPU it is the default group itself."""

    rank: int
    world_size: int
    control: Any
    created_here: bool  # this call made the group, so the caller that asked for it also ends it


def init_process_group(device: torch.device, backend: str = "auto", timeout_s: float = 600.0) -> ProcessGroup | None:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...), or None
    for a single process. backend auto = nccl for CUDA devices, gloo for the CPU; a backend the device cannot use
    is an OwnGPTError. timeout_s bounds how long a collective waits for a rank that died or hangs."""
    import torch.distributed as dist

    world = launched_world_size()
    if world <= 1 and not dist.is_initialized():
        return None
    if device.type not in ("cpu", "cuda"):
        raise OwnGPTError(f"training over several processes runs on CUDA GPUs (NCCL) or CPUs (gloo), not on "
                          f"{device.type}: use --set train.device=cpu, or run one process (without torchrun)")
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend not in ("gloo", "nccl"):
        raise OwnGPTError(f"train.dist_backend must be auto, gloo or nccl, not {backend!r}")
    if backend == "nccl" and device.type != "cuda":
        raise OwnGPTError(f"train.dist_backend=nccl needs CUDA GPUs, but this run trains on {device}: use "
                          "train.dist_backend=gloo (or auto) for CPU processes")
    if backend == "gloo" and device.type == "cuda":
        raise OwnGPTError("train.dist_backend=gloo cannot shard or average GPU tensors the way FSDP and DDP need "
                          "them: use train.dist_backend=nccl (or auto) on GPUs, gloo for CPU processes")
    if backend == "nccl" and not dist.is_nccl_available():
        raise OwnGPTError(f"train.dist_backend=nccl: {torch_build()} has no NCCL; install a CUDA build "
                          f"(`{CUDA_WHEELS}`) or use train.dist_backend=gloo")
    created = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        timeout = datetime.timedelta(seconds=timeout_s)
        kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if attempt is not None:
            # torchrun keeps one store for all its restarts (--max-restarts): without a prefix per attempt, restarted
            # processes read the dead ones' addresses from it and hang or fail connecting to them
            store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
            kwargs.update(store=dist.PrefixStore(f"owngpt/attempt-{attempt}", store), rank=rank, world_size=world)
        dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
        created = True
    elif dist.get_backend() != backend:
        raise OwnGPTError(f"the process group already uses {dist.get_backend()}, but this run asks for {backend}")
    control = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s)) if backend != "gloo" else None
    return ProcessGroup(rank=dist.get_rank(), world_size=dist.get_world_size(), control=control,
                        created_here=created)
