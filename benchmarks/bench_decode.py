"""Decode speed on identical weights: owngpt vs transformers' generate vs llama.cpp (llama-cpp-python running the GGUF
owngpt exports), with the weight bandwidth each reaches beside the machine's measured copy bandwidth.

The model: GPT-2-124M-shaped (12 layers, 768 wide, 12 heads, context 1024) with an 8,192-token vocabulary, random
weights (speed does not depend on what they learned), the gpt2 preset. A 16-token prompt, 128 new tokens, greedy,
no stop ids; batch 1 (all three) and 8 (owngpt and HF). One timed run per cell after one short warm-up, or with
--rounds R, R runs of every cell interleaved round by round (every model stays loaded): the table then gives the
median tok/s (and the range), and a second table the median of the per-round ratios of owngpt's batch-1 rows to
llama.cpp at the same precision (this machine's speed drifts by ±20% within minutes).
tok/s counts new tokens of every row; the prompt's prefill is inside the time (the same for all three).
Bandwidth = bytes of weights read per decode step (every matrix once; the tied head/embedding once; the
position table left out: one row per step) × steps/s. The copy bandwidth is a 256 MiB torch copy, counted as
read + write. owngpt also runs with bf16 weights (what `--dtype bfloat16` loads), and in fp32 with each one-row
product (owngpt/generate/gemv.py: the one this process chose, and torch's own). Greedy tokens of each runtime
are compared with owngpt's fp32 ones (batch 1).

    python benchmarks/bench_decode.py [--threads 2] [--new-tokens 128] [--dtypes f32,f16,bf16,q8_0] [--no-llama]
        [--owngpt-dtypes fp32,fp32-torch,fp32+compiled,bf16,int8-weight,int8-dynamic,int8-dynamic+compiled]
        [--int8-head] [--rounds 1] [--profile]

DTYPE+compiled (fp32+compiled, int8-dynamic+compiled, ...): owngpt's compiled one-row decoding
(owngpt/generate/compiled.py, `--compile`); its compile time is printed and not inside the tok/s (batches of 8 run
eagerly, as without it). --int8-head quantizes the int8 models' output head too, as q8_0 does.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from bench_serve import cpu_description
from owngpt.config import ModelConfig
from owngpt.export.gguf import llama_cpp_greedy
from owngpt.generate import GenerationConfig, generate_ids
from owngpt.generate.gemv import gemv_backend, set_gemv_backend
from owngpt.model.gpt import GPT

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def copy_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """GB/s of a large tensor copy (bytes read + bytes written), best of `repeats`."""
    src = torch.ones(mib << 18)  # fp32: 4 bytes each
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best / 1e9


def weight_bytes_torch(model: torch.nn.Module, skip: tuple[str, ...] = ("wpe",)) -> int:
    """Bytes of the distinct parameters a decode step reads (a tied matrix once; the position table left out, and the
    token table too when an int8 head replaces it as the output matrix: a step reads one row of it)."""
    if any(name == "lm_head.weight" and b.dtype == torch.int8 for name, b in model.named_buffers()):
        skip = (*skip, "wte")
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if p.data_ptr() in seen or any(s in name for s in skip):
            continue
        seen.add(p.data_ptr())
        total += p.numel() * p.element_size()
    for name, b in model.named_buffers():  # an int8 model's matrices and scales are buffers (owngpt quantize)
        if b.dtype == torch.int8 or name.endswith(".scale"):
            total += b.numel() * b.element_size()
    return total


def timed(fn) -> tuple[float, list]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_owngpt(model: GPT, prompts: list[list[int]], n: int) -> tuple[float, list[list[int]]]:
    cfg = GenerationConfig(max_new_tokens=n, temperature=0.0)
    generate_ids(model, prompts[:1], GenerationConfig(max_new_tokens=4, temperature=0.0))  # warm-up
    seconds, outs = timed(lambda: generate_ids(model, prompts, cfg))
    assert all(len(o) == n for o in outs)
    return len(prompts) * n / seconds, outs


def hf_model(model: GPT):
    from transformers import GPT2Config, GPT2LMHeadModel

    from owngpt.export.hf import hf_config_from_gpt, hf_state_from_gpt

    config = hf_config_from_gpt(model.cfg)
    config.update(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    hf = GPT2LMHeadModel(GPT2Config(**config)).eval()
    state = hf_state_from_gpt(model)
    hf.load_state_dict(state, strict=False)  # the causal-mask buffers are HF's own
    return hf


def bench_hf(hf, prompts: list[list[int]], n: int) -> tuple[float, list[list[int]]]:
    ids = torch.tensor(prompts)
    kw = dict(do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0, eos_token_id=None,
              attention_mask=torch.ones_like(ids))
    with torch.no_grad():
        hf.generate(ids[:1], **{**kw, "max_new_tokens": 4, "min_new_tokens": 4, "attention_mask": torch.ones_like(ids[:1])})
        seconds, out = timed(lambda: hf.generate(ids, **kw))
    return len(prompts) * n / seconds, out[:, ids.size(1):].tolist()


def bench_llama(llm, prompt: list[int], n: int) -> tuple[float, list[int]]:
    """tok/s and greedy tokens of an open_llama model (warmed up by the caller)."""
    seconds, out = timed(lambda: llama_cpp_greedy(llm, prompt, n))
    return n / seconds, out


def gguf_weight_bytes(path: Path) -> int:
    from gguf import GGUFReader

    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors if not t.name.startswith("position_embd"))


def same(ref: list[int], other: list[int]) -> str:
    if ref == other:
        return "yes"
    first = next((i for i, (a, b) in enumerate(zip(ref, other)) if a != b), min(len(ref), len(other)))
    return f"no (from token {first})"


MATRIX_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu")


def profile_owngpt(model: GPT, prompt: list[int], n: int, rows: int = 12) -> None:
    """torch.profiler over one batch-1 greedy decode: the top ops by self CPU time, and the share of the wall time
    spent in matrix work (MATRIX_OPS) versus everything else (other ops, Python, dispatch)."""
    from torch.profiler import ProfilerActivity, profile

    cfg = GenerationConfig(max_new_tokens=n, temperature=0.0)
    generate_ids(model, [prompt], GenerationConfig(max_new_tokens=4, temperature=0.0))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        generate_ids(model, [prompt], cfg)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    matrix = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_OPS) / 1e6
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))
    print(f"profiled wall {wall * 1e3 / n:.2f} ms/token; matrix work {matrix * 1e3 / n:.2f} ms/token "
          f"({100 * matrix / wall:.0f}%); everything else {1e3 * (wall - matrix) / n:.2f} ms/token\n")


# an owngpt weight dtype -> the llama.cpp GGUF dtype of the same precision (the pairs of --rounds' ratio table)
SAME_PRECISION = {"fp32": "f32", "fp32-torch": "f32", "bf16": "bf16", "fp16": "f16", "int8-weight": "q8_0",
                  "int8-dynamic": "q8_0"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--dtypes", default="f32,f16,bf16,q8_0", help="llama.cpp GGUF dtypes")
    ap.add_argument("--owngpt-dtypes", default="fp32,fp32-torch,bf16", help="owngpt weight dtypes (fp32 first: the "
                    "reference, with the one-row product this process chose; fp32-torch: fp32 with torch's own product; "
                    "also int8-weight, int8-dynamic: owngpt quantize's models; DTYPE+compiled: with compiled one-row "
                    "decoding, --compile)")
    ap.add_argument("--int8-head", action="store_true", help="int8 models: the output head int8 too (`owngpt quantize "
                    "--head`), as llama.cpp's q8_0 quantizes its output matrix")
    ap.add_argument("--rounds", type=int, default=1, help="time every cell this many times, the cells interleaved "
                    "round by round; the table gives medians, and a second table the median per-round ratio of each "
                    "owngpt batch-1 row to llama.cpp at the same precision")
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print owngpt's batch-1 decode profile first")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(preset="gpt2", vocab_size=8192, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    model = GPT(cfg).eval()
    n, batches = args.new_tokens, [int(b) for b in args.batches.split(",")]
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(8, cfg.vocab_size, (max(batches), args.prompt_len), generator=g).tolist()
    print(f"{datetime.date.today()}, {cpu_description()}; torch {torch.__version__}, {args.threads} threads")
    print(f"model: {model.describe()}; prompt {args.prompt_len} tokens, {n} new tokens, greedy")
    if args.profile:
        profile_owngpt(model, prompts[0], n)
    copy_gbs = copy_bandwidth()
    print(f"memory copy bandwidth: {copy_gbs:.1f} GB/s (read + write)\n")
    chosen = gemv_backend()
    print(f"one-row product chosen by owngpt/generate/gemv.py: {chosen}\n")
    # cells: (runtime, label, batch, weight bytes, the owngpt/llama.cpp dtype, run() -> (tok/s, first row's tokens))
    cells: list[tuple[str, str, int, int, str, Callable[[], tuple[float, list[int]]]]] = []
    keep: list = []  # every contender's weights stay loaded when cells are interleaved
    for spec in args.owngpt_dtypes.split(","):
        dtype, _, compiled = spec.partition("+")
        eager_fp32 = dtype.startswith("fp32") and not compiled
        label = f"fp32 ({'torch' if dtype == 'fp32-torch' else chosen} sgemv)" if eager_fp32 else dtype
        if dtype.startswith("int8"):  # owngpt quantize's int8 model (int8-weight, int8-dynamic)
            from owngpt.export.quantize import quantize_model

            weights = quantize_model(model, dtype, head=args.int8_head)
            label += ", int8 head" if args.int8_head else ""
        else:
            # a copy only for another dtype, or to compile (compile_decoding marks the model it is given)
            weights = copy.deepcopy(model) if compiled or not dtype.startswith("fp32") else model
            weights.to(getattr(torch, TORCH_DTYPES.get(dtype, "float32")))
        if compiled:
            from owngpt.generate.compiled import compile_decoding

            label += " (compiled)"
            start = time.perf_counter()
            compile_decoding(weights)
            print(f"compile_decoding of {dtype} (warm-up included): {time.perf_counter() - start:.0f} s\n")
        backend = "torch" if dtype == "fp32-torch" else chosen

        def run(weights=weights, b=1, backend=backend):
            set_gemv_backend(backend)
            tps, outs = bench_owngpt(weights, prompts[:b], n)
            return tps, outs[0]

        for b in batches:
            cells.append(("owngpt", label, b, weight_bytes_torch(weights), dtype, partial(run, b=b)))
        keep.append(weights)
        del weights, run
        if args.rounds == 1:  # one cell after the other, each model dropped once timed
            _time_cells(cells, 1, n)
            cells, keep = [], []
    if not args.no_hf:
        hf = hf_model(model)
        for b in batches:
            def run_hf(b=b, hf=hf):
                tps, outs = bench_hf(hf, prompts[:b], n)
                return tps, outs[0]

            cells.append(("transformers", "fp32", b, weight_bytes_torch(hf), "fp32", run_hf))
        keep.append(hf)
        del hf, run_hf
        if args.rounds == 1:
            _time_cells(cells, 1, n)
            cells, keep = [], []
    if not args.no_llama:
        from owngpt.export.gguf import export_gguf, open_llama
        from owngpt.tokenizer import train_bpe

        tok = train_bpe(["the quick brown fox jumps over the lazy dog. " * 50], 300)  # rows past it: [PAD] tokens
        with tempfile.TemporaryDirectory() as tmp:
            for dtype in args.dtypes.split(","):
                path = Path(tmp) / f"model-{dtype}.gguf"
                export_gguf(model, tok, path, dtype)
                llm = open_llama(path, n_ctx=args.prompt_len + n, threads=args.threads)
                llama_cpp_greedy(llm, prompts[0], 4)  # warm-up
                cells.append(("llama.cpp", dtype, 1, gguf_weight_bytes(path), dtype,
                              partial(bench_llama, llm, prompts[0], n)))
                keep.append(llm)
                del llm
                if args.rounds == 1:
                    _time_cells(cells, 1, n)
                    cells, keep = [], []
                path.unlink()  # llama.cpp maps the file: an open model keeps reading it
    if cells:
        _time_cells(cells, args.rounds, n)


_HEADER_PRINTED = []
_REF: list[list[int]] = []  # owngpt fp32's greedy tokens (the first owngpt row)


def _time_cells(cells, rounds: int, n: int) -> None:
    """Time every cell `rounds` times, interleaved round by round, and print its table row (the median tok/s, and
    the range over the rounds when there are several); with several rounds also the ratio table."""
    if not _HEADER_PRINTED:
        print("| runtime | weights | batch | tok/s | weight MB/step | weight GB/s | greedy = owngpt fp32 |")
        print("|---|---|---|---|---|---|---|")
        _HEADER_PRINTED.append(True)
    speeds: list[list[float]] = [[] for _ in cells]
    tokens: list[list[int]] = [[] for _ in cells]
    for r in range(rounds):
        for i, cell in enumerate(cells):
            tps, toks = cell[5]()
            speeds[i].append(tps)
            tokens[i] = tokens[i] or toks
        if rounds > 1:
            print(f"round {r + 1}: " + ", ".join(f"{c[0]} {c[1]} b{c[2]} {s[-1]:.1f}" for c, s in zip(cells, speeds)),
                  flush=True)
    for (runtime, label, batch, nbytes, _, _), s, toks in zip(cells, speeds, tokens):
        _REF[:] = _REF or ([toks] if runtime == "owngpt" else [])
        tps = statistics.median(s)
        spread = f" ({min(s):.1f}-{max(s):.1f})" if rounds > 1 else ""
        match = same(_REF[0], toks) if _REF else ""
        print(f"| {runtime} | {label} | {batch} | {tps:.1f}{spread} | {nbytes / 1e6:.0f} | "
              f"{nbytes * tps / batch / 1e9:.1f} | {match} |", flush=True)
    llama = {c[4]: s for c, s in zip(cells, speeds) if c[0] == "llama.cpp"}
    pairs = [(c[1], SAME_PRECISION[c[4]], [a / b for a, b in zip(s, llama[SAME_PRECISION[c[4]]])])
             for c, s in zip(cells, speeds) if c[0] == "owngpt" and c[2] == 1 and SAME_PRECISION.get(c[4]) in llama]
    if rounds > 1 and pairs:
        print(f"\nowngpt at batch 1 against llama.cpp at the same precision, per round ({rounds} rounds):\n")
        print("| owngpt | llama.cpp | median ratio | min-max |")
        print("|---|---|---|---|")
        for label, theirs, ratios in pairs:
            print(f"| {label} | {theirs} | **{statistics.median(ratios):.2f}x** | {min(ratios):.2f}-{max(ratios):.2f} |")


if __name__ == "__main__":
    main()
