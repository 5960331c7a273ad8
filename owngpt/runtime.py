"""Where and how torch runs: the device, mixed precision (autocast), CPU threads and TF32, and RNG states.

Every stage asks here: training (`fit`), loading a checkpoint for chat or evaluation (`device="auto"`), and
(next) torch.distributed's rank and world size. RNG states are captured as plain tensors and ints, so a
checkpoint's train_state.pt loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch

from owngpt.errors import OwnGPTError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else as torch names it."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise OwnGPTError(f"train.device {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None


def cpu_has_bf16_matmul() -> bool:
    """True on CPUs with AMX tiles (Intel Sapphire Rapids and later), where oneDNN's bf16 matmuls run ~2.5-6x
    faster than fp32. On AVX2-only CPUs bf16 is emulated and slower than fp32, so it is never the default there."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def autocast(device: torch.device, dtype: str) -> tuple[contextlib.AbstractContextManager, torch.dtype]:
    """(context, dtype) for mixed precision: bf16 autocast by default on CUDA GPUs that support it and on CPUs with
    AMX (no loss scaling needed with bf16); fp32 elsewhere unless asked."""
    if dtype == "auto":
        fast_bf16 = (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (
            device.type == "cpu" and cpu_has_bf16_matmul())
        dtype = "bfloat16" if fast_bf16 else "float32"
    if dtype == "float32":
        return contextlib.nullcontext(), torch.float32
    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=torch_dtype), torch_dtype


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
