"""Compiled one-row decoding on the CPU (`owngpt.load(..., compile=True)`, `--compile` of generate, chat and serve).

A batch-1 decode step reads every weight once and runs ~1,000 small operations around those reads (norms, views,
KV-cache copies). In eager PyTorch the small operations cost as much as a third of the step, and the one-row
products go through the BLAS's matrix-vector kernel (MKL's reads fp32 weights at ~13 GB/s on an AMD EPYC,
numpy's OpenBLAS at ~22: owngpt/generate/gemv.py). Here the whole step — the model's forward for one new token
with its KV cache — goes through torch.compile (Inductor's C++ backend). Before Inductor gets the traced graph,
`_one_row_rewrites` writes each one-row fp32 product as an elementwise product summed over the row (`_row_sum`),
which Inductor turns into one vectorised loop per matrix that reads the weights once at about the copy bandwidth,
and the attention of the one new token as products, a softmax and sums (`_one_query_attention`) instead of a call
to ATen's flash-attention kernel; the small operations fuse around them, and the step becomes one C++ kernel.
On the EPYC it decoded a GPT-2-124M-shaped model 1.4-1.7x faster than the eager step with numpy's product (1.18x
faster than an earlier version that rewrote the products while tracing, through a TorchFunctionMode that then ran
Python at every operation of every step, and left the attention and the layer norms' recomputation inside the
products), at 0.86-0.90x llama.cpp's f32 speed on the same weights (medians of interleaved rounds), and the
quickstart's model 4.0-4.4x faster than eager (docs/benchmarks.md, "One kernel per step").

Cost: compiling takes tens of seconds to minutes (GPT-2-124M on 2 cores: ~130 s the first time, ~40 s once
Inductor's on-disk cache holds the kernels; 43 s for the quickstart's model the first time, 13.6 s after), paid in `compile_decoding` by a short warm-up decode, so that the first reply does not wait for
it. It needs the C++ compiler Inductor builds its CPU kernels with ($CXX, else g++; clang++ on macOS). The
compiled step is shared by every generation of that model in the process: the warm-up decodes from a one-token
and a two-token prompt past a growth of the cache, after which the position and the cache's length are symbols,
so other prompts, longer replies and grown caches reuse the same code (a test checks that nothing recompiles).

Scope: fp32 (and int8) models on the CPU; batch-1 steps with a KV cache (a chat, one prompt, one beam; a server's
single stream). Batches of rows, prefill and beam search with several beams run eagerly as before. bf16 weights are
refused (their compiled decoding is not measured: `--dtype float32` with `--compile`). For fp32 and int8-dynamic
models results equal the eager step's up to float32 rounding (the products are summed in another order): the same
greedy tokens in the benchmark and tests (int8-weight: below).

int8 models (`owngpt quantize`). An int8-weight model's step is compiled with its weights frozen in (Inductor's
`freezing`): they become constants of the graph, which lets Inductor replace each `_weight_int8pack_mm` with its C++
int8 GEMM template (`max_autotune_gemm`, C++ backend; it needs constant weights, packs them once into its own
layout, and fuses the per-channel scale): no Python call per product. On the AVX2 EPYC that decoded the
GPT-2-124M-shaped model 1.7-2.6x as fast as the eager int8 step, at 0.86-1.06x llama.cpp's q8_0 (docs/benchmarks.md,
"int8-weight compiled with its weights frozen in").
Its logits differ from the eager step's by ~0.5% (relative): the template rounds each product to bf16 as the eager
kernel does, but sums in another order; both are as far from the dequantized fp32 model's logits, and a near tie
can pick another greedy token (the tests allow that and nothing more).
What it costs: dynamo guards those weights by identity (another model of the same shape compiles its own
versions, with its own weights), so weights changed in place after compiling are not seen; the compiled versions
(three after the warm-up) hold packed copies of the int8 weights (the process grew by ~0.2 GB compiling GPT-2-124M's
92 MB of them, ~0.1 GB without freezing); and Inductor's on-disk cache of compiled graphs is off for this step:
in torch 2.13 a graph it caches with frozen weights carries the template's packed copy of them, which a later model
of the same shapes would then decode with (found by a test: the second model spoke with the first one's weights).
Kernels still come from the compiler's cache, but each load compiles the graphs again: 94-115 s for GPT-2-124M on 2
cores, ~50 s for the quickstart's model. Dynamo's compiled versions keep the weights alive: a compiled int8-weight
model dropped in a long process leaves its int8 weights and packed copies in memory (load it once, as chat, serve
and generate do). Inductor's freezing flag is process-wide: the step sets it for its call under a lock, but a
compilation in another thread at that moment would read it too.
An int8-dynamic model's products stay calls to fbgemm's kernel through a custom op (owngpt/model/quantized.py: its
packed weights are an object dynamo cannot trace), and only the small operations and float products around them are
compiled. Written out as int8 weight x row, summed, scaled (the
_row_sum way), the same products became code that read 1.3 GB/s on an AVX2 CPU (8 int8 values a load): 11.7
tokens/s against 60-70 with the kernels, so that is not done.
"""

from __future__ import annotations

import operator
import shutil
import threading
import weakref
from typing import Callable

import torch
import torch.nn.functional as F

from owngpt.errors import OwnGPTError
from owngpt.generate.gemv import _one_row

_ENABLED: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()
_compiled_step = None  # torch.compile(_step), made on first use
# int8-weight models (module docstring) -> the Inductor backends their frozen step was compiled with
_FROZEN: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()
_frozen_steps: dict[str, Callable] = {}  # backends -> torch.compile(_step, ...) with them, made on first use
_FREEZING = threading.Lock()  # around the switch of Inductor's process-wide freezing flag in _frozen_decode_step
# The frozen step's Inductor backends for matrix products, in the order tried: its C++ GEMM template alone first.
# With ATen's kernel among the choices, Inductor times each product alone and keeps the faster: on GPT-2-124M's
# shapes the template won two clearly (103 against 132 us, 32 against 48) and tied the others (98 against 99 us
# for 3072 -> 768, where the tie went to ATen's, which then cannot fuse the scale and the add after it). Whole-step
# runs on the EPYC were mixed within the machine's drift (131-142 and 107-132 tokens/s with the template alone, 103-112
# and 126-133 with both). A model whose products the template cannot take (Inductor finds no choice) is compiled
# again with ATen's kernel allowed
FROZEN_BACKENDS = ("CPP", "CPP,ATEN")
_compilations = 0  # compile_decoding calls in this process


def has_cpp_compiler() -> bool:
    """Whether the C++ compiler Inductor would build with is installed (its own search: $CXX, else g++, or clang++
    on macOS)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return shutil.which(get_cpp_compiler()) is not None
    except Exception:  # its search raises when it finds none (and its location may move between torch versions)
        return False


def compile_decoding(model: torch.nn.Module) -> None:
    """Decode `model`'s batch-1 steps through the compiled step (module docstring) from now on, compiled here by a
    warm-up of a few dummy decode steps. An OwnGPTError when the model is not on the CPU, has no KV cache
    (the baselines, an ensemble), has weights other than fp32 or int8 (see Scope), no C++ compiler is installed, or
    compiling fails."""
    from owngpt.generate.runner import device_of

    device = device_of(model)
    if device.type != "cpu":
        raise OwnGPTError(f"compiled decoding is for models on the CPU; this one is on {device} (leave "
                          "--compile off there)")
    if not hasattr(model, "new_cache"):
        raise OwnGPTError(f"compiled decoding needs a model with a KV cache (owngpt's GPT), not "
                          f"{type(model).__name__}")
    dtypes = {p.dtype for p in model.parameters() if p.dim() == 2}  # an int8 model's int8 matrices are buffers
    if dtypes - {torch.float32}:
        raise OwnGPTError(f"compiled decoding is for fp32 (or int8) weights, not {', '.join(sorted(map(str, dtypes)))} "
                          "(its speed there is not measured): load the model with --dtype float32 to use --compile")
    if not has_cpp_compiler():
        raise OwnGPTError("compiled decoding needs a C++ compiler (g++ or clang++; e.g. `apt-get install g++`), "
                          "which torch.compile's CPU kernels are built with")
    _ENABLED.add(model)
    # every compiled model takes a few of torch's compiled versions of the one step function (its first shapes, then
    # symbolic ones), and the versions of a model that is gone may stay in torch's cache; past torch's limit (8) a
    # further model would run eagerly, with MKL's product. So the limit grows with every model compiled here
    global _compilations
    _compilations += 1
    config = torch._dynamo.config
    config.cache_size_limit = max(config.cache_size_limit, 8 * _compilations)  # recompile_limit in newer torch
    if hasattr(config, "accumulated_cache_size_limit"):  # the process-wide cap (256) over all functions
        config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 256 + 8 * _compilations)
    try:
        if getattr(model.cfg, "method", None) == "int8-weight":  # an Int8GPT's Int8Config (owngpt/model/quantized.py)
            _warm_up_frozen(model)
        else:
            _warm_up(model)
    except BaseException as e:  # the model stays eager, also after Ctrl-C during the warm-up
        _ENABLED.discard(model)
        _FROZEN.pop(model, None)
        if isinstance(e, Exception):  # torch's own compile errors (a broken compiler, a torch too old to trace it)
            raise OwnGPTError(f"compiling the decode step failed ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); leave --compile off") from e
        raise


def compiled(model: torch.nn.Module) -> bool:
    """Whether `compile_decoding(model)` was called."""
    return model in _ENABLED


def decode_step(model: torch.nn.Module, ids: torch.Tensor, cache) -> torch.Tensor:
    """model(ids, cache=cache) for one new token of one row, through the compiled step: (1, 1, V) logits."""
    if model in _FROZEN:
        return _frozen_decode_step(model, ids, cache)
    global _compiled_step
    if _compiled_step is None:
        # the first compilation fixes the position and the cache's length; the next ones (in the warm-up) make them
        # symbols, so that longer replies and grown caches reuse the code. dynamic=True from the start compiles
        # fewer times but decoded slower in a trial here, so it is left to torch's automatic choice
        _compiled_step = torch.compile(_step, backend=_backend())
    return _compiled_step(model, ids, cache)


def _frozen_decode_step(model: torch.nn.Module, ids: torch.Tensor, cache) -> torch.Tensor:
    """decode_step of an int8-weight model: its weights frozen into the graph (module docstring)."""
    backends = _FROZEN[model]
    step = _frozen_steps.get(backends)
    if step is None:
        # dynamic from the start: each version holds a packed copy of the weights, so fewer versions (three against
        # five) save memory; it decoded no slower here. Each torch.compile keeps its own versions
        options = {"freezing": True, "max_autotune_gemm": True, "max_autotune_gemm_backends": backends,
                   "fx_graph_cache": False}
        step = _frozen_steps[backends] = torch.compile(_step, dynamic=True, backend=_backend(options))
    # freezing is read while dynamo traces too (the options reach only Inductor): it guards the weights by identity
    # and Int8Linear then calls the ATen op that Inductor's template replaces. Set for the call (a few us), under a
    # lock so that two threads decoding at once cannot leave it set
    config = torch._inductor.config
    with _FREEZING:
        before, config.freezing = config.freezing, True
        try:
            return step(model, ids, cache)
        finally:
            config.freezing = before


def _step(model: torch.nn.Module, ids: torch.Tensor, cache) -> torch.Tensor:
    return model(ids, cache=cache)


def _backend(options: dict | None = None) -> Callable:
    """torch.compile's backend for the step: Inductor (its C++ backend, with `options` as config patches) on the
    step's graph after _one_row_rewrites. Inductor's size asserts are off: they re-check in Python, at every step,
    the sizes and strides of each input (~170 calls for GPT-2-124M) that dynamo's guards have just checked."""

    def compile_step(gm: torch.fx.GraphModule, example_inputs):
        from torch._inductor.compile_fx import compile_fx

        _one_row_rewrites(gm)
        return compile_fx(gm, example_inputs, config_patches={"size_asserts": False, **(options or {})})

    return compile_step


def _one_row_rewrites(gm: torch.fx.GraphModule) -> int:
    """Rewrite the traced step's graph (dynamo's, before Inductor) where it works on one row, into forms that
    Inductor fuses into the kernels around them; the number of calls rewritten:
    - F.linear of one fp32 row becomes (weight * row).sum(-1) (+ bias): one vectorised pass over the weight at about
      the copy bandwidth, where the call would be MKL's matrix-vector kernel (~13 GB/s on an AMD EPYC);
    - attention of one query (SDPA without dropout) becomes _one_query_attention's products, softmax and sums, where
      the call would be ATen's flash-attention kernel for the CPU (~0.1 ms a call for a one-row query).
    Done on the graph rather than by a TorchFunctionMode around the call, so that no Python runs per operation when
    the compiled step runs."""
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is F.linear:
            args = _bound(node, ("input", "weight", "bias"))
            x, w, b = (_example(gm, args.get(k)) for k in ("input", "weight", "bias"))
            if x is None or w is None or ("bias" in args and args["bias"] is not None and b is None):
                continue
            if not _one_row(x, w, b) or not isinstance(w.shape[0], int):
                continue
            replacement = _row_sum
        elif node.target is F.scaled_dot_product_attention:
            args = _bound(node, ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale"))
            q, k = _example(gm, args.get("query")), _example(gm, args.get("key"))
            if (q is None or k is None or q.dim() != 4 or k.dim() != 4 or q.shape[-2] != 1
                    or not q.dtype.is_floating_point or args.get("dropout_p", 0.0) != 0.0
                    or args.get("is_causal", False) is not False
                    or not (q.shape[1] == k.shape[1] or (args.get("enable_gqa") and q.shape[1] % k.shape[1] == 0))):
                continue
            replacement = _one_query_attention
        else:
            continue
        with gm.graph.inserting_before(node):
            new = gm.graph.call_function(replacement, (), args)
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        done += 1
    if done:
        gm.graph.lint()
        gm.recompile()
    return done


def _bound(node: torch.fx.Node, names: tuple[str, ...]) -> dict:
    """The node's arguments by name (positional ones named in `names`' order), its keyword arguments as they are."""
    return {**dict(zip(names, node.args)), **node.kwargs}


def _example(gm: torch.fx.GraphModule, arg):
    """The (fake) tensor an argument of a traced graph stands for, None when it is no tensor."""
    if not isinstance(arg, torch.fx.Node):
        return None
    value = operator.attrgetter(arg.target)(gm) if arg.op == "get_attr" else arg.meta.get("example_value")
    return value if isinstance(value, torch.Tensor) else None


def _row_sum(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear of one row (_one_row_rewrites) as the weight times the row, summed over the row.

    The row is taken with torch.as_strided, a view of its memory, which makes Inductor store the row once. Through
    reshape, Inductor would compute the row's producer (a layer norm: the row, its mean and spread, the norm's weight
    and bias) inside the loop over the weight, again for each of the weight's rows: four to six loads per weight load
    instead of two; the GPT-2-124M-shaped model decoded 1.05-1.14x faster with the row stored."""
    k = weight.shape[1]
    row = torch.as_strided(input, (1, k), (k, 1)) if input.stride(-1) == 1 else input.reshape(1, k)
    y = (weight * row).sum(-1)
    if bias is not None:
        y = y + bias
    return y.reshape(*input.shape[:-1], weight.shape[0])


def _one_query_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
                         scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """F.scaled_dot_product_attention of one query position (_one_row_rewrites): query (B, H, 1, D), key and value
    (B, H_kv, S, D) with H a multiple of H_kv (each group of H / H_kv consecutive query heads shares one key/value
    head, as enable_gqa does), written as products and sums over the cached positions."""
    B, H, _, D = query.shape
    groups = key.shape[1]
    q = query.reshape(B, groups, H // groups, 1, D)
    scores = (q * key[:, :, None]).sum(-1) * (D ** -0.5 if scale is None else scale)  # (B, H_kv, H / H_kv, S)
    if attn_mask is not None:
        mask = attn_mask.expand(B, H, 1, key.shape[2]).reshape(B, groups, H // groups, key.shape[2])
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = scores.softmax(-1)
    out = (weights[..., None] * value[:, :, None]).sum(-2)  # (B, H_kv, H / H_kv, D)
    return out.reshape(B, H, 1, D)


def _warm_up_frozen(model: torch.nn.Module) -> None:
    """_warm_up of an int8-weight model with each of FROZEN_BACKENDS in turn, on to the next only when Inductor found
    no choice for a product with this one."""
    if model in _FROZEN:  # compiled before: its versions are there, under the backends it got
        _warm_up(model)
        return
    for backends in FROZEN_BACKENDS:
        _FROZEN[model] = backends
        try:
            _warm_up(model)
            return
        except Exception as e:
            if backends == FROZEN_BACKENDS[-1] or not _no_choice(e):
                raise


def _no_choice(error: BaseException) -> bool:
    """Whether Inductor's NoValidChoicesError is in `error`'s chain (its compile errors wrap it)."""
    seen = 0
    while error is not None and seen < 20:  # a cycle in the chain stops at the bound
        if type(error).__name__ == "NoValidChoicesError":
            return True
        error = error.__cause__ or error.__context__ or getattr(error, "inner_exception", None)
        seen += 1
    return False


def _warm_up(model: torch.nn.Module) -> None:
    """Compile now: a two-token prompt for a few steps past a growth of the cache (the first shapes, then the
    position and the cache's length as symbols), then a one-token prompt (an empty cache: its own guard)."""
    from owngpt.generate.runner import Runner, inference

    with inference(model):
        for prompt, steps in (([0, 0], 5), ([0], 2)):
            runner = Runner(model, capacity=4)
            runner.join([prompt])
            token = torch.zeros(1, dtype=torch.long, device=runner.device)
            for _ in range(min(steps, model.cfg.block_size - len(prompt))):  # 4 -> 8: the cache grows on the way
                runner.step(token)
