"""The int8 GPT: owngpt's GPT with its Linear layers holding int8 weights and one fp scale per output channel.

A checkpoint of it (arch "gpt-int8") stores plain tensors — `*.weight` int8 (out, in), `*.scale` (out,), `*.bias` —
so it is rebuilt from model.safetensors with no pickle, and loads through the same `load_model` as any GPT.
Only the matrices of the Transformer blocks (and, when asked, the output head) are int8; embeddings and norms
keep their floats.

The matrix products are PyTorch's own CPU kernels (measured on an AVX2 EPYC, torch 2.13, 2 threads, one
768x3072 layer: fp32 dense 221 us at 1 row, 701 us at 8 rows):
  int8-weight   weights only: aten._weight_int8pack_mm, the op torchao's int8 weight-only config dispatches to on
                a CPU. Its activations go in as bf16: with fp32 ones torch 2.13's CPU kernel is not vectorised on
                AVX2 (4-20x slower than fp32 dense); with bf16 it takes 122 us / 518 us. bf16 rounding adds ~0.4%.
  int8-dynamic  activations quantized per call too: fbgemm's quantized::linear_dynamic (89 us / 154 us), the kernel
                behind torch.ao's dynamic quantization, fed packed weights made on first use from the plain int8
                tensors. torch 2.13 marks torch.ao.quantization (quantize_dynamic) deprecated;
                the kernel is still the fastest int8 product on an AVX2 CPU, so we call it directly and keep the
                checkpoint free of its packed (pickled) format. Activations use fbgemm's 7-bit range
                (reduce_range, which avoids AVX2's 16-bit saturation): ~1.5% error per layer. Its activation
                scale is per call, shared by every row, so a token's logits shift slightly with what it is
                computed with (the rest of the batch, a prompt at once vs. token by token): close, not equal.
Without the fbgemm ops (a future torch), int8-dynamic falls back to torch._int_mm (correct, slower).
We do not use quantize_dynamic itself: deprecated, and its modules do not serialise as plain tensors.

Under torch.compile (compiled decoding, owngpt/generate/compiled.py): an int8-weight layer compiled with its weights
frozen in (Inductor's `freezing`, as compiled decoding does for int8-weight models) calls the ATen op itself, which
Inductor then replaces with its own int8 GEMM template (or, where compiled decoding allows it, keeps). Otherwise
both products are called through custom ops (`owngpt::int8_weight_mm`, `owngpt::int8_dynamic_mm`), which Inductor
keeps as calls to these same kernels while it fuses the small operations around them: with the weights as graph
inputs, Inductor's lowering of _weight_int8pack_mm fails on a fused input in torch 2.13, and fbgemm's packed weights
are an object dynamo cannot trace. Eagerly the kernels are called directly (a custom op's dispatch costs time per
call). The torch._int_mm fallback compiles as it is.
int8_dynamic_mm finds its layer by id(), which the compiled graph holds as a constant: dynamo guards that constant
on the layer's identity and drops the graph when the layer dies, so a later object at the same address never runs
an old graph (a test compiles two int8 models of the same shape in one process).

Not handled: training (the class is `trainable = False`), int4, per-group scales, GPU kernels.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import GPT

INT8_METHODS = ("int8-weight", "int8-dynamic")
_FBGEMM = hasattr(torch.ops.quantized, "linear_dynamic") and "fbgemm" in torch.backends.quantized.supported_engines


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: (q int8 (out, in), scale fp32 (out,)) with weight ~ q * scale[:, None].
    The scale maps each row's absmax to 127, so the rounding error of a weight is at most scale / 2."""
    w = weight.detach().float()  # (out, in)
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,); an all-zero row keeps a tiny, finite scale
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)  # -128 unused: keeps the range symmetric
    return q, scale


# every Int8Linear by id(), for int8_dynamic_mm to find a layer's packed weights (an object a custom op cannot take;
# registered when made, since dynamo cannot trace the registration)
_LINEARS: "weakref.WeakValueDictionary[int, Int8Linear]" = weakref.WeakValueDictionary()


def _weight_product(rows: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """rows (N, in) float @ (weight int8 (out, in) * scale[:, None]).T -> (N, out) in rows' dtype: int8-weight's
    kernel, its activations in bf16 (module docstring). `weight` may have zero columns past `in` (kernel_int8): rows
    get zero columns to match."""
    x = rows.to(torch.bfloat16)
    if weight.shape[1] != x.shape[1]:
        x = nn.functional.pad(x, (0, weight.shape[1] - x.shape[1]))
    return torch.ops.aten._weight_int8pack_mm(x.contiguous(), weight, scale.to(torch.bfloat16)).to(rows.dtype)


def kernel_int8(weight: torch.Tensor) -> torch.Tensor:
    """int8-weight's matrix as its kernel takes it: `weight` itself when its rows' length is a multiple of 8, else
    with zero columns up to one. torch 2.13's CPU _weight_int8pack_mm reads past a row of any other length (measured
    on an AVX2 EPYC: NaN or wrong values at one input row, a crash at two); zeros leave the products unchanged."""
    extra = -weight.shape[1] % 8
    return nn.functional.pad(weight, (0, extra)) if extra else weight


def _dynamic_product(rows: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, linear: int) -> torch.Tensor:
    """int8-dynamic's fbgemm product of rows (N, in) with the weights packed by the Int8Linear whose id() is
    `linear` (weight and scale are that layer's, passed so that a graph knows what the result depends on)."""
    return _fbgemm_product(rows, _LINEARS[linear]._fbgemm_weights())


def fbgemm_packed(weight: torch.Tensor, scale: torch.Tensor):
    """fbgemm's packed copy of int8 `weight` (out, in) with per-channel `scale` (out,), for quantized::linear_dynamic."""
    with warnings.catch_warnings():  # the deprecation of quantized tensors (see the module docstring)
        warnings.simplefilter("ignore")
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        qweight = torch._make_per_channel_quantized_tensor(weight.cpu(), scale.double().cpu(), zeros, 0)
        return torch.ops.quantized.linear_prepack(qweight, None)


def _fbgemm_product(rows: torch.Tensor, packed) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic(rows.float().contiguous(), packed, True).to(rows.dtype)


int8_weight_mm = torch.library.custom_op("owngpt::int8_weight_mm", _weight_product, mutates_args=())
int8_dynamic_mm = torch.library.custom_op("owngpt::int8_dynamic_mm", _dynamic_product, mutates_args=())


@int8_weight_mm.register_fake
def _weight_product_shape(rows: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return rows.new_empty(rows.shape[0], weight.shape[0])


@int8_dynamic_mm.register_fake
def _dynamic_product_shape(rows: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, linear: int) -> torch.Tensor:
    return rows.new_empty(rows.shape[0], weight.shape[0])


class Int8Linear(nn.Module):
    """y = x @ (weight * scale[:, None]).T + bias, weight int8 (out, in); see the module docstring for `method`."""

    def __init__(self, in_features: int, out_features: int, bias: bool, method: str) -> None:
        super().__init__()
        if method not in INT8_METHODS:
            raise OwnGPTError(f"unknown int8 method {method!r}: choose {' or '.join(INT8_METHODS)}")
        self.in_features, self.out_features, self.method = in_features, out_features, method
        # buffers, not parameters: nothing here is trained, and a dtype cast (model.to(bf16)) must leave int8 alone
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        _LINEARS[id(self)] = self

    def __setstate__(self, state) -> None:  # a copy (copy.deepcopy) is registered as well
        super().__setstate__(state)
        _LINEARS[id(self)] = self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # (N, in): the kernels take 2-D inputs
        compiling = torch.compiler.is_compiling()  # the custom ops then (but frozen int8-weight), else the kernels
        if self.method == "int8-weight":  # bf16 activations: the vectorised path (module docstring)
            # the custom op only when compiling with the weights as graph inputs (not frozen: module docstring); the
            # test is dynamo's own (is_parameter_freezing), by which the weights become constants
            as_op = compiling and not (torch._inductor.config.freezing and not torch.is_grad_enabled())
            weight = kernel_int8(self.weight) if compiling else self._kernel_weight()  # frozen: padded once
            y = (int8_weight_mm if as_op else _weight_product)(rows, weight, self.scale)  # (N, out)
        elif _FBGEMM:
            if compiling:  # the graph keeps id(self) as a constant: the op finds the layer by it while it lives
                y = int8_dynamic_mm(rows, self.weight, self.scale, id(self))
            else:
                y = _fbgemm_product(rows, self._fbgemm_weights())
        else:
            y = self._int_mm(rows)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def _fbgemm_weights(self):
        """fbgemm's packed copy of (weight, scale)."""
        return self._derived("_packed", lambda: fbgemm_packed(self.weight, self.scale))

    def _kernel_weight(self) -> torch.Tensor:
        """kernel_int8(weight): the weight itself, or (rows of other lengths than multiples of 8) its padded copy."""
        if self.in_features % 8 == 0:
            return self.weight
        return self._derived("_padded", lambda: kernel_int8(self.weight))

    def _derived(self, name: str, make):
        """make()'s result, kept as attribute `name` and made once per weights object: made again after
        load_state_dict, which replaces the data in place (the version counters tell)."""
        key = (self.weight.data_ptr(), self.weight._version, self.scale.data_ptr(), self.scale._version, self.scale.dtype)
        cached = self.__dict__.get(name)
        if cached is None or cached[0] != key:
            cached = self.__dict__[name] = (key, make())
        return cached[1]

    def _int_mm(self, rows: torch.Tensor) -> torch.Tensor:
        """Per-row int8 activations times int8 weights, int32 accumulation, both scales applied after."""
        xf = rows.float()
        x_scale = xf.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0  # (N, 1)
        xq = torch.round(xf / x_scale).clamp_(-127, 127).to(torch.int8)  # (N, in)
        acc = torch._int_mm(xq, self.weight.t())  # (N, out) int32
        return (acc.float() * x_scale * self.scale.float()).to(rows.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, method={self.method}"


@dataclass
class Int8Config(ModelConfig):
    """A GPT's ModelConfig plus how it was quantized: `method` (INT8_METHODS) and whether the output head is int8."""

    method: str = "int8-weight"
    head: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in INT8_METHODS:
            raise OwnGPTError(f"unknown int8 method {self.method!r}: choose {' or '.join(INT8_METHODS)}")


class Int8GPT(GPT):
    """GPT with int8 Linear layers: the same forward(idx, cache, valid), new_cache and cfg, so generation, chat,
    scoring and serving use it as they use a GPT. Built empty from its config; `load_state_dict` fills it."""

    arch = "gpt-int8"
    trainable = False
    untrainable_reason = ("its weights are int8 (made by `owngpt quantize` for inference); train or fine-tune the "
                          "fp32 run it was quantized from, then quantize again")

    def __init__(self, cfg: Int8Config) -> None:
        super().__init__(cfg)
        for name, linear in int8_targets(self, cfg.head):
            parent, attr = self.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]
            setattr(parent, attr, Int8Linear(linear.in_features, linear.out_features, linear.bias is not None,
                                             cfg.method))

    def _apply(self, fn, recurse: bool = True):
        """Moves and casts as GPT's, except off the CPU: the int8 kernels (module docstring) are CPU kernels, so a
        move to a GPU is one clear error instead of a failing matmul at the first token."""
        super()._apply(fn, recurse)
        where = {m.weight.device.type for m in self.modules() if isinstance(m, Int8Linear)} - {"cpu", "meta"}
        if where:
            raise OwnGPTError(f"an int8 checkpoint (owngpt quantize) runs on the CPU only, not on {where.pop()}: "
                              "pass --device cpu (or device='cpu'), or use the fp32 run it was made from on a GPU")
        return self

    def num_params(self, non_embedding: bool = False) -> int:
        """As GPT's, counting the int8 layers' weights and biases (buffers here) as the parameters they stand for. A
        tied output head made int8 (`--head`) is an int8 copy of the embedding, which is counted already: once, as in
        the fp32 GPT."""
        tied_head = self.cfg.tie_embeddings and isinstance(self.lm_head, Int8Linear)
        int8 = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in self.modules()
                   if isinstance(m, Int8Linear) and not (tied_head and m is self.lm_head))
        return super().num_params(non_embedding) + int8

    def describe(self) -> str:
        return super().describe().replace("GPT ", f"GPT {self.cfg.method} ", 1)


def int8_targets(model: GPT, head: bool) -> list[tuple[str, nn.Linear]]:
    """The Linear layers that become int8: every one inside the Transformer blocks, plus lm_head when `head`."""
    found = [(name, m) for name, m in model.transformer.h.named_modules(prefix="transformer.h")
             if isinstance(m, nn.Linear)]
    if head:
        found.append(("lm_head", model.lm_head))
    return found
