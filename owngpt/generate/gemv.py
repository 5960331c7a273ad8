"""One-row decoding on the CPU: the matrix-vector products through numpy's BLAS where it reads weights faster.

Decoding one row (batch 1) reads every weight matrix once per token, so its speed is the bandwidth of the BLAS's
matrix-vector product (sgemv). PyTorch's CPU wheels bring Intel MKL, whose sgemv can fall well short of the memory
bandwidth: on an AMD EPYC (AVX2, 2 threads, torch 2.13) it read a GPT-2-124M's matrices at 13.4 GB/s where numpy's
OpenBLAS (the BLAS numpy's PyPI wheels ship) read them at 22.6 GB/s (docs/benchmarks.md, "One-row products").
So, while a batch-1 step runs under `one_row_products(True)`, every fp32 `F.linear` of one row on the CPU — the
model's layers, LoRA's products, the output head — is computed by `numpy.dot` on the same memory (no copies).

When (`uses_numpy`, once per generation): on the CPU, for a model whose fp32 matrices hold at least
MIN_WEIGHT_BYTES (smaller ones stay in the caches, where both products are fast and the mode's Python handler on
every torch call would cost more than it saves), when this process chose numpy's product (`gemv_backend`):
`OWNGPT_GEMV` = auto | torch | openblas (default auto); auto times both once per process on a matrix larger than
the caches and takes numpy's only when it is clearly faster (a numpy built on MKL, or a CPU where MKL does well,
keeps torch's). Results are the same products summed in another order: equal to float32 rounding, not bit for bit.

Threads: numpy's BLAS is limited to torch's thread count when the choice is made (threadpoolctl), and two thread
pools must not spin against each other on a small machine, so inside the context torch runs on one thread (the
small operations between the products); its thread count is restored on exit.

Not handled: bf16 and int8 weights (their own kernels), batches of rows (matrix products, where MKL is fast), GPUs.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from owngpt.errors import OwnGPTError

BACKENDS = ("auto", "torch", "openblas")
_PROBE_SHAPE = (4096, 4096)  # 64 MiB of fp32 weights: past the caches, as a layer of a real model is
_MARGIN = 0.85  # numpy must take at most this share of torch's time to be chosen: noise never flips the choice
MIN_WEIGHT_BYTES = 64 << 20  # fp32 matrices of a model below this stay in the caches: torch's product (docstring)
_chosen: str | None = None


def asked_backend() -> str:
    """OWNGPT_GEMV, checked: 'auto', 'torch' or 'openblas' (an OwnGPTError naming the variable otherwise). `owngpt
    serve` checks it at start-up, so a server never starts with a value every request would fail on."""
    asked = os.environ.get("OWNGPT_GEMV", "auto").strip().lower() or "auto"
    if asked not in BACKENDS:
        raise OwnGPTError(f"OWNGPT_GEMV={asked!r}: use {', '.join(BACKENDS)}")
    return asked


def gemv_backend() -> str:
    """'openblas' or 'torch': which product batch-1 CPU decoding uses in this process (OWNGPT_GEMV, else measured
    once by `probe`). The first call also limits numpy's BLAS to torch's thread count."""
    global _chosen
    if _chosen is None:
        asked = asked_backend()
        limit_blas_threads(torch.get_num_threads())
        _chosen = probe() if asked == "auto" else asked
    return _chosen


def limit_blas_threads(n: int) -> None:
    """numpy's BLAS on at most `n` threads (it starts on every core): `--threads` holds for both products."""
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(user_api="blas").limit(limits=max(1, n))


def uses_numpy(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether batch-1 steps of `model` on `device` go through numpy's product (module docstring: a CPU, fp32
    matrices of at least MIN_WEIGHT_BYTES, and this process's choice). The probe runs only when the rest holds."""
    if device.type != "cpu":
        return False
    size = sum(p.numel() * 4 for p in model.parameters() if p.dtype == torch.float32 and p.dim() == 2)
    return 0 < size and size >= MIN_WEIGHT_BYTES and gemv_backend() == "openblas"


def set_gemv_backend(name: str) -> None:
    """Choose the product for this process ('auto' measures again at the next decode step): for benchmarks/tests."""
    global _chosen
    if name not in BACKENDS:
        raise OwnGPTError(f"gemv backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    _chosen = None if name == "auto" else name


def probe(shape: tuple[int, int] = _PROBE_SHAPE, repeats: int = 3) -> str:
    """'openblas' when numpy's matrix-vector product of a `shape` fp32 matrix (torch on one thread beside it, as in
    decoding) takes under _MARGIN of torch's (with its own threads), else 'torch'. Best of `repeats`, after a warm-up
    product each (8 products of 64 MiB at the defaults)."""
    w = torch.full(shape, 0.5)
    x = torch.full((1, shape[1]), 0.25)
    wn, xn = w.numpy(), x[0].numpy()

    def best(fn) -> float:
        fn()  # warm-up: pages touched, thread pools started
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.no_grad():
        t_torch = best(lambda: F.linear(x, w))
    with _one_torch_thread():
        t_numpy = best(lambda: np.dot(wn, xn))
    return "openblas" if t_numpy < _MARGIN * t_torch else "torch"


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads != 1:
            torch.set_num_threads(threads)


class _NumpyLinear(TorchFunctionMode):
    """F.linear of one fp32 CPU row without autograd → numpy.dot on the same memory; everything else unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, w = args[0], args[1]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            if _one_row(x, w, b):
                y = torch.from_numpy(np.dot(w.detach().numpy(), x.detach().reshape(-1).numpy()))
                if b is not None:
                    y += b.detach()
                return y.reshape(*x.shape[:-1], w.shape[0])
        return func(*args, **kwargs)


def _one_row(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> bool:
    return (not torch.is_grad_enabled() and x.dtype == w.dtype == torch.float32 and x.device.type == "cpu"
            and w.device.type == "cpu" and w.dim() == 2 and x.dim() >= 1 and x.shape[-1] == w.shape[1]
            and x.numel() == w.shape[1] and w.is_contiguous()
            and (b is None or (b.dtype == torch.float32 and b.device.type == "cpu")))


@contextlib.contextmanager
def one_row_products(active: bool) -> Iterator[None]:
    """Around one decode step: when `active` (one row, and `uses_numpy` said so for this model), one-row fp32
    products go through numpy and torch runs on one thread; otherwise nothing changes."""
    if not active:
        yield
        return
    with _one_torch_thread(), _NumpyLinear():
        yield
