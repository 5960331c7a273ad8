"""One-row decoding's matrix-vector products: PyTorch's BLAS (MKL in its CPU wheels) against numpy's (OpenBLAS in
its PyPI wheels), alone and inside owngpt's batch-1 decode (owngpt/generate/gemv.py chooses between them).

1. A pass over every weight matrix of a GPT-2-124M-shaped model (12 layers, 768 wide, 8,192-token tied head:
   49 matrices, 365 MB of fp32, far past the caches), one input row each, as one decode step reads them; the
   contenders interleaved round by round; GB/s = weight bytes / time of a pass (best of the rounds).
2. owngpt's greedy decode at batch 1 (16-token prompt, --new-tokens), each backend in turn, --rounds times
   interleaved; the medians and their ratio; both must give the same tokens. Of that model and of the quickstart's
   (tiny-cpu: 3 layers x 128, 4,096-token vocabulary), whose matrices fit in the caches: gemv.py leaves models
   under MIN_WEIGHT_BYTES on torch's product, and this row shows what numpy's would do to them.
3. With --int8: the same pass with the matrices int8 per output channel (owngpt.model.quantized), through the kernels
   PyTorch has for one row on a CPU: `_weight_int8pack_mm` with bf16 rows (owngpt's int8-weight), fbgemm's
   `linear_dynamic` (int8-dynamic), oneDNN's `qlinear_pointwise` on a uint8 row (the op PT2E int8 quantization is
   lowered to by Inductor on x86; the row quantized beforehand, so only the product is timed), and the 49
   `_weight_int8pack_mm` products compiled as one graph with the weights frozen in, max_autotune and Inductor's C++
   GEMM backend, whose int8 weight-only template (an AVX2 micro-kernel for bf16 rows times int8 weights) competes
   with ATen's kernel shape by shape; GB/s = int8 weight bytes / time. What llama.cpp's q8_0 reads at is in
   docs/benchmarks.md (issue 16).

    python benchmarks/bench_gemv.py [--threads 2] [--rounds 6] [--new-tokens 64] [--int8] [--no-decode]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_decode import bench_owngpt, copy_bandwidth  # noqa: E402
from bench_serve import cpu_description  # noqa: E402

from owngpt.config import ModelConfig  # noqa: E402
from owngpt.generate import gemv  # noqa: E402
from owngpt.model.gpt import GPT  # noqa: E402


def matrix_pass(model: GPT, rounds: int, threads: int) -> list[tuple[str, float]]:
    """(contender, best seconds per pass over the model's matrices)."""
    mats = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    rows = {w.shape[1]: torch.ones(1, w.shape[1]) for w in mats}

    def torch_pass() -> None:
        for w in mats:
            F.linear(rows[w.shape[1]], w)

    np_mats = [w.numpy() for w in mats]
    np_rows = {k: v[0].numpy() for k, v in rows.items()}

    def numpy_pass() -> None:
        for w in np_mats:
            np.dot(w, np_rows[w.shape[1]])

    contenders = {f"torch F.linear, {threads} threads": (torch_pass, threads),
                  "torch F.linear, 1 thread": (torch_pass, 1),
                  "numpy.dot (its BLAS), torch on 1 thread": (numpy_pass, 1)}
    best = {name: float("inf") for name in contenders}
    with torch.no_grad():
        for _ in range(rounds + 1):  # the first round warms up: pages, thread pools
            for name, (fn, n) in contenders.items():
                torch.set_num_threads(n)
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
    torch.set_num_threads(threads)
    return list(best.items())


def int8_pass(model: GPT, rounds: int) -> list[tuple[str, float, int]]:
    """(contender, best seconds per pass over the model's matrices as int8, weight bytes read per pass)."""
    import torch._inductor.config as inductor_config

    from owngpt.model.quantized import fbgemm_packed, quantize_per_channel

    mats = [quantize_per_channel(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weights = [(q, scale.to(torch.bfloat16)) for q, scale in mats]
    rows = {q.shape[1]: torch.ones(1, q.shape[1], dtype=torch.bfloat16) for q, _s in weights}
    nbytes = sum(q.numel() for q, _s in weights)

    def pack_mm(x, q, scale):
        return torch.ops.aten._weight_int8pack_mm(x, q, scale)

    packed = [fbgemm_packed(q, s) for q, s in mats]  # as owngpt's int8-dynamic layers pack theirs
    frows = {k: v.float() for k, v in rows.items()}  # fbgemm quantizes fp32 rows itself (7-bit range, as owngpt)

    class Matrices(torch.nn.Module):
        """Every product of the pass in one forward, the weights as buffers: frozen into the graph as constants,
        which Inductor's int8 GEMM template requires (with the weights as graph inputs it keeps ATen's kernel)."""

        def __init__(self) -> None:
            super().__init__()
            for i, (q, s) in enumerate(weights):
                self.register_buffer(f"q{i}", q)
                self.register_buffer(f"s{i}", s)

        def forward(self, x768: torch.Tensor, x3072: torch.Tensor) -> list[torch.Tensor]:
            xs = {768: x768, 3072: x3072}
            return [pack_mm(xs[q.shape[1]], getattr(self, f"q{i}"), getattr(self, f"s{i}"))
                    for i, (q, _s) in enumerate(weights)]

    frozen = Matrices().eval()
    with torch.no_grad(), inductor_config.patch(max_autotune=True, max_autotune_gemm_backends="CPP,ATEN",
                                                freezing=True):
        compiled = torch.compile(frozen, dynamic=False)
        out = compiled(rows[768], rows[3072])
    for y, (q, s) in zip(out, weights):  # the template's products equal the eager kernel's (up to summation order)
        torch.testing.assert_close(y.float(), pack_mm(rows[q.shape[1]], q, s).float(), rtol=2e-2, atol=2e-2)

    def eager_pass() -> None:
        for q, s in weights:
            pack_mm(rows[q.shape[1]], q, s)

    fbgemm = [(frows[q.shape[1]], w) for w, (q, _s) in zip(packed, mats)]

    def fbgemm_pass() -> None:
        for row, w in fbgemm:
            torch.ops.quantized.linear_dynamic(row, w, True)

    # oneDNN: weights packed for a one-row input, the row quantized once per shape (asymmetric uint8, zero point 128)
    onednn = []
    for q, s in mats:
        row = frows[q.shape[1]]
        row_scale = float(row.abs().max()) / 127.0
        qrow = torch.clamp(torch.round(row / row_scale) + 128, 0, 255).to(torch.uint8)
        onednn.append((qrow, row_scale, torch.ops.onednn.qlinear_prepack(q, [1, q.shape[1]]), s.float(),
                       torch.zeros(q.shape[0], dtype=torch.long)))

    def onednn_pass() -> None:
        for qrow, row_scale, w, s, zero in onednn:
            torch.ops.onednn.qlinear_pointwise(qrow, row_scale, 128, w, s, zero, None, 1.0, 0, torch.float32, "none",
                                               [], "")

    def inductor_pass() -> None:
        compiled(rows[768], rows[3072])

    contenders = {"_weight_int8pack_mm, bf16 row (int8-weight)": eager_pass,
                  "fbgemm linear_dynamic (int8-dynamic)": fbgemm_pass,
                  "oneDNN qlinear_pointwise, uint8 row (PT2E's lowering)": onednn_pass,
                  "Inductor, max-autotune, frozen weights: one compiled graph of the 49 products": inductor_pass}
    best = {name: float("inf") for name in contenders}
    with torch.no_grad():
        for _ in range(rounds + 1):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
    return [(name, seconds, nbytes) for name, seconds in best.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--int8", action="store_true", help="also the int8 kernels' pass over the matrices")
    ap.add_argument("--no-decode", action="store_true", help="skip the decode rows (part 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(preset="gpt2", vocab_size=8192, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    model = GPT(cfg).eval()
    nbytes = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, torch.nn.Linear))
    try:  # numpy >= 1.26 describes its build
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    except TypeError:
        blas = {}
    print(f"{datetime.date.today()}, {cpu_description()}; torch {torch.__version__} "
          f"({'MKL' if torch.backends.mkl.is_available() else 'no MKL'}), numpy {np.__version__} "
          f"({blas.get('name', '?')} {blas.get('version', '')}); {args.threads} threads")
    print(f"memory copy bandwidth: {copy_bandwidth():.1f} GB/s (read + write); weights per pass: {nbytes / 1e6:.0f} MB; "
          f"gemv.py's probe here chooses: {gemv.probe()}\n")
    print("| one pass over the matrices | ms | weight GB/s | vs torch |")
    print("|---|---|---|---|")
    passes = matrix_pass(model, args.rounds, args.threads)
    ref = passes[0][1]
    for name, seconds in passes:
        print(f"| {name} | {seconds * 1e3:.1f} | {nbytes / seconds / 1e9:.1f} | {ref / seconds:.2f}× |")
    if args.int8:
        print("\n| one pass over the matrices, int8 per channel | ms | int8 weight GB/s | vs torch fp32 pass |")
        print("|---|---|---|---|")
        for name, seconds, int8_bytes in int8_pass(model, args.rounds):
            print(f"| {name} | {seconds * 1e3:.1f} | {int8_bytes / seconds / 1e9:.1f} | {ref / seconds:.2f}× |")
    if args.no_decode:
        return

    small = GPT(ModelConfig(preset="modern", vocab_size=4096, block_size=256, n_layer=3, n_head=4,
                            n_embd=128)).eval()
    print(f"\n| batch-1 greedy decode, {args.new_tokens} new tokens, {args.rounds} rounds | product | median tok/s | "
          "runs | vs torch | same tokens | gemv.py uses numpy |")
    print("|---|---|---|---|---|---|---|")
    prompt = [list(range(8, 24))]
    for name, m in (("GPT-2-124M shape", model), ("quickstart shape", small)):
        gemv.set_gemv_backend("auto")
        default = gemv.uses_numpy(m, torch.device("cpu"))  # what generation does with this model here
        tps: dict[str, list[float]] = {"torch": [], "openblas": []}
        tokens = {}
        threshold, gemv.MIN_WEIGHT_BYTES = gemv.MIN_WEIGHT_BYTES, 0  # both products for every model here
        for _ in range(args.rounds):
            for backend in tps:
                gemv.set_gemv_backend(backend)
                rate, outs = bench_owngpt(m, prompt, args.new_tokens)
                tps[backend].append(rate)
                tokens[backend] = outs[0]
        gemv.MIN_WEIGHT_BYTES = threshold
        base = statistics.median(tps["torch"])
        for backend, rates in tps.items():
            print(f"| {name} | {backend} | {statistics.median(rates):.1f} | {', '.join(f'{r:.1f}' for r in rates)} "
                  f"| {statistics.median(rates) / base:.2f}× | {'yes' if tokens['torch'] == tokens[backend] else 'NO'} "
                  f"| {'yes' if default else 'no'} |")
    gemv.set_gemv_backend("auto")


if __name__ == "__main__":
    main()
