"""The architectures a checkpoint can hold: `arch` name -> (config class, model class).

A checkpoint's meta.json names its `arch`; `build` makes an empty model of it from the recorded config, so
loading, chat, generation, scoring and evaluation work for every registered model alike. A model class has
a `cfg` attribute (its config dataclass, with `block_size` and `vocab_size`), takes `(B, T)` ids and returns
`(B, T, V)` logits. Checkpoints written before `arch` existed are GPTs. `make_model` makes the model a run's
ModelConfig asks for (`model.arch`: gpt, lstm or seq2seq).

Adding a model: write its module under owngpt/model/, give the class an `arch` name, and `register` it below.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Callable

from torch import nn

from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import GPT
from owngpt.model.lstm import LSTMLM, LSTMConfig
from owngpt.model.ngram import NGram, NGramConfig
from owngpt.model.quantized import Int8Config, Int8GPT
from owngpt.model.seq2seq import Seq2Seq, Seq2SeqConfig

DEFAULT_ARCH = "gpt"  # what a meta.json without an `arch` field holds

_ARCHS: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {}


def register(arch: str, config_cls: type, model_cls: Callable[[Any], nn.Module]) -> None:
    _ARCHS[arch] = (config_cls, model_cls)


register(GPT.arch, ModelConfig, GPT)
register(LSTMLM.arch, LSTMConfig, LSTMLM)
register(Seq2Seq.arch, Seq2SeqConfig, Seq2Seq)
register(NGram.arch, NGramConfig, NGram)
register(Int8GPT.arch, Int8Config, Int8GPT)


def make_model(model_cfg: ModelConfig, tokenizer=None) -> nn.Module:
    """A new model of the architecture `model_cfg.arch` asks for (seeded by the caller): GPT(model_cfg) for gpt; for a
    baseline its own config derived from model_cfg's generic sizes (vocab_size, block_size, n_layer, n_embd, n_head,
    dropout; seq2seq tie_embeddings too). seq2seq also records the assistant header's ids, taken from `tokenizer` (without one,
    e.g. to count parameters, it never cuts a sequence into history and reply)."""
    if model_cfg.arch == "lstm":
        return LSTMLM(LSTMConfig.from_model_config(model_cfg))
    if model_cfg.arch == "seq2seq":
        from owngpt.tokenizer.template import assistant_header

        header = assistant_header(tokenizer) if tokenizer is not None else []
        return Seq2Seq(Seq2SeqConfig.from_model_config(model_cfg, header))
    return GPT(model_cfg)


def archs() -> list[str]:
    return sorted(_ARCHS)


def require_trainable(arch: str | None, where: str) -> None:
    """Refuse, in one line, to train a model that gradient descent does not train (a class with `trainable = False`:
    the n-gram, which is counted from data), e.g. a checkpoint given as the base to fine-tune."""
    entry = _ARCHS.get(arch or DEFAULT_ARCH)
    reason = getattr(entry[1], "untrainable_reason", None) if entry is not None else None
    if reason:  # e.g. the int8 GPT: why it cannot be trained, and what to train instead
        raise OwnGPTError(f"{where}: a {arch} model cannot be trained: {reason}")
    if entry is not None and not getattr(entry[1], "trainable", True):
        trainable = ", ".join(a for a in archs() if getattr(_ARCHS[a][1], "trainable", True))
        raise OwnGPTError(f"{where}: an {arch} model is counted from data, not trained: it cannot be "
                          f"fine-tuned or trained further; start from a {trainable} "
                          "checkpoint instead (`owngpt baseline ngram` counts a new n-gram)")


def arch_of(model: nn.Module) -> str:
    """The name meta.json records for a model: its registered `arch`, else its class name (a model of your own
    that `fit` trains; `build` then says it is not registered)."""
    return getattr(model, "arch", None) or type(model).__name__


def config_dict(model: nn.Module) -> dict[str, Any]:
    """The model's config as plain data, as meta.json records it ({} for a model without a dataclass `cfg`)."""
    cfg = getattr(model, "cfg", None)
    return asdict(cfg) if cfg is not None and hasattr(cfg, "__dataclass_fields__") else {}


def build(arch: str | None, model_config: dict[str, Any], **changes: Any) -> nn.Module:
    """An untrained model of `arch` (None = the default) from a recorded config, with `changes` applied
    (e.g. dropout). Unknown fields of the config or an unknown arch are one-line errors."""
    arch = arch or DEFAULT_ARCH
    if arch not in _ARCHS:
        raise OwnGPTError(f"unknown model architecture {arch!r} in the checkpoint (this owngpt knows "
                          f"{', '.join(archs())}); a newer owngpt may have written it")
    config_cls, model_cls = _ARCHS[arch]
    if not model_config:
        raise OwnGPTError("the checkpoint records no model config, so its model cannot be rebuilt")
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(model_config) - known)
    if unknown:
        raise OwnGPTError(f"the checkpoint's model config has fields this owngpt does not know: {', '.join(unknown)}")
    return model_cls(config_cls(**{**model_config, **changes}))
