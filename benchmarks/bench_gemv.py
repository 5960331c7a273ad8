"""One-row decoding's matrix-vector products: PyTorch's BLAS (MKL in its CPU wheels) against numpy's (OpenBLAS in
its PyPI wheels), alone and inside owngpt's batch-1 decode (owngpt/generate/gemv.py chooses between them).

1. A pass over every weight matrix of a GPT-2-124M-shaped model (12 layers, 768 wide, 8,192-token tied head:
   49 matrices, 365 MB of fp32, far past the caches), one input row each, as one decode step reads them; the
   contenders interleaved round by round; GB/s = weight bytes / time of a pass (best of the rounds).
2. owngpt's greedy decode at batch 1 (16-token prompt, --new-tokens), each backend in turn, --rounds times
   interleaved; the medians and their ratio; both must give the same tokens. Of that model and of the quickstart's
   (tiny-cpu: 3 layers x 128, 4,096-token vocabulary), whose matrices fit in the caches: gemv.py leaves models
   under MIN_WEIGHT_BYTES on torch's product, and this row shows what numpy's would do to them.

    python benchmarks/bench_gemv.py [--threads 2] [--rounds 6] [--new-tokens 64]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--new-tokens", type=int, default=64)
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
