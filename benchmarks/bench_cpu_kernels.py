"""Why the CPU training figure stops where it does: the baby-GPT step's element-wise and attention kernels, each
against the alternatives one could write in eager PyTorch, timed forward + backward in one process.

The contenders run interleaved (A B C A B C ...) so that a noisy machine slows them alike; the table gives the
mean per call and the ratio to PyTorch's own kernel of the same maths.

    python benchmarks/bench_cpu_kernels.py                 # ~1 min on 2 cores
    python benchmarks/bench_cpu_kernels.py --rounds 100    # quicker, noisier
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from owngpt.model.gpt import _TanhGELU

K = math.sqrt(2 / math.pi)


class _UpcastGELU(torch.autograd.Function):
    """tanh-GELU computed in fp32 for a bf16 tensor (casts in, PyTorch's fp32 kernel, cast out)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return F.gelu(x.float(), approximate="tanh").to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.ops.aten.gelu_backward(grad.float(), x.float(), approximate="tanh").to(x.dtype)


def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention as matmul + masked softmax (nanoGPT's fallback path)."""
    T = q.size(-2)
    att = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.size(-1)))
    att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return att.softmax(-1) @ v


def interleaved(contenders: dict[str, Callable[[], None]], rounds: int, calls: int = 5) -> dict[str, float]:
    """Mean microseconds per call of each contender, the contenders taking turns."""
    for fn in contenders.values():  # warm-up
        for _ in range(3):
            fn()
    total = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            total[name] += time.perf_counter() - t
    return {name: 1e6 * s / (rounds * calls) for name, s in total.items()}


def fwd_bwd(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Callable[[], None]:
    grad = None

    def run() -> None:
        nonlocal grad
        out = fn(*inputs)
        grad = torch.randn_like(out) if grad is None else grad
        out.backward(grad)
        for t in inputs:
            t.grad = None

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    # the baby-GPT step's shapes: batch 12 x context 64 tokens, MLP 512 wide; 4 heads of 32
    x = torch.randn(12 * 64, 512, dtype=torch.bfloat16, requires_grad=True)
    gelu = interleaved({
        "PyTorch tanh-GELU, bf16 (the baseline)": fwd_bwd(lambda t: F.gelu(t, approximate="tanh"), x),
        "tanh-GELU in fp32 (upcast, PyTorch's fp32 kernel)": fwd_bwd(_UpcastGELU.apply, x),
        "tanh-GELU as x * sigmoid(2z), bf16": fwd_bwd(_TanhGELU.apply, x),
        "erf-GELU, bf16 (other maths, for scale)": fwd_bwd(F.gelu, x),
    }, args.rounds)
    q, k, v = (torch.randn(12, 4, 64, 32, requires_grad=True) for _ in range(3))
    attention = interleaved({
        "SDPA, fp32, is_causal (the baseline)": fwd_bwd(lambda a, b, c: F.scaled_dot_product_attention(
            a, b, c, is_causal=True), q, k, v),
        "matmul + masked softmax, fp32": fwd_bwd(manual_attention, q, k, v),
    }, args.rounds)
    print("\n| kernel (forward + backward, one layer of the baby-GPT step) | µs per call | × baseline time |")
    print("|---|---|---|")
    for table in (gelu, attention):
        base = next(iter(table.values()))
        for name, us in table.items():
            print(f"| {name} | {us:,.0f} | {us / base:.2f} |")


if __name__ == "__main__":
    main()
