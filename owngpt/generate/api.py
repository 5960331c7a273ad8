"""A loaded model ready to generate: `owngpt.load(path)` -> Generator with `.generate(prompt)` and `.stream(prompt)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Iterator, Sequence

import torch

from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.errors import OwnGPTError
from owngpt.generate.engine import device_of, generate_texts, stream_text
from owngpt.generate.settings import GenerationConfig, make_config
from owngpt.runtime import inference_dtype, resolve_device


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """A text prompt's ids; an empty prompt starts from <|endoftext|> (documents begin after one in training)."""
    return tokenizer.encode(prompt) or [tokenizer.eot_id]


def generate(model, tokenizer, prompts: list[str], cfg: GenerationConfig, *, stop_ids: Collection[int] = (),
             use_cache: bool = True) -> list[str]:
    """The continuation text of each text prompt, cut before the first stop string."""
    ids = [encode_prompt(tokenizer, p) for p in prompts]
    return generate_texts(model, tokenizer, ids, cfg, stop_ids=stop_ids, use_cache=use_cache)


class Generator:
    """A model with its tokenizer, ready to generate: `owngpt.load(path).generate("Once upon a time")`.

    Keyword arguments of generate/stream are GenerationConfig fields (plus stop_ids); they override `defaults`."""

    def __init__(self, model, tokenizer, meta: CheckpointMeta | None = None,
                 defaults: GenerationConfig | None = None) -> None:
        self.model, self.tokenizer, self.meta = model, tokenizer, meta
        self.defaults = defaults or GenerationConfig()

    @property
    def device(self) -> torch.device:
        return device_of(self.model)

    def config(self, **overrides: Any) -> GenerationConfig:
        return make_config(self.defaults, **overrides)

    def _need_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise OwnGPTError("this checkpoint carries no tokenizer, so it cannot generate text; use generate_ids "
                              "with token ids")

    def generate(self, prompt: str | list[str], *, stop_ids: Collection[int] = (), **overrides: Any) -> str | list[str]:
        """The continuation of one prompt (a str) or of each of a list of prompts (a list). With num_return > 1 it
        is always a list: num_return continuations per prompt, in prompt order (samples, or the best distinct
        beams, best first)."""
        self._need_tokenizer()
        single = isinstance(prompt, str)
        cfg = self.config(**overrides)
        outs = generate(self.model, self.tokenizer, [prompt] if single else list(prompt), cfg, stop_ids=stop_ids)
        return outs[0] if single and cfg.num_return == 1 else outs

    def stream(self, prompt: str, *, stop_ids: Collection[int] = (), **overrides: Any) -> Iterator[str]:
        """The continuation of one prompt, piece by piece as it decodes."""
        self._need_tokenizer()
        cfg = self.config(**overrides)
        return stream_text(self.model, self.tokenizer, encode_prompt(self.tokenizer, prompt), cfg, stop_ids=stop_ids)

    def __repr__(self) -> str:
        return f"Generator({self.model.describe() if hasattr(self.model, 'describe') else type(self.model).__name__})"


def load(path: str | Path, *, adapter: str | Path | None = None, device: str = "auto",
         dtype: str = "auto", ensemble: Sequence[str | Path] = (), compile: bool = False) -> Generator:
    """A checkpoint (run folder: its best, else latest; or a checkpoint folder) with its tokenizer, on `device`,
    optionally with a LoRA adapter (RUN/adapter of `owngpt sft --lora`) applied to it. dtype: the weights' dtype
    for generation (runtime.inference_dtype: auto = bf16 where the hardware computes it natively, else fp32).
    ensemble: more checkpoints with the same tokenizer; the model is then an Ensemble (owngpt/model/ensemble.py)
    that averages their next-token probabilities with this one's (the adapter applies to `path` only; the meta is
    `path`'s). compile: one-row decode steps on the CPU through torch.compile (owngpt/generate/compiled.py), compiled
    here before returning (tens of seconds; up to two minutes for a GPT-2-sized or an int8-weight model)."""
    from owngpt.checkpoint.format import load_model

    dev = resolve_device(device)
    model, meta, tokenizer = load_model(_existing(path), device=dev)
    if adapter is not None:
        from owngpt.checkpoint.adapter import load_adapter

        load_adapter(adapter, model, meta)
        model.to(dev)
    if ensemble:
        from owngpt.model.ensemble import Ensemble

        members = [model]
        for other in ensemble:
            member, other_meta, _ = load_model(_existing(other), device=dev)
            if other_meta.tokenizer_hash != meta.tokenizer_hash:
                raise OwnGPTError(f"cannot ensemble {path} and {other}: they were trained with different tokenizers "
                                  f"({meta.tokenizer_hash} vs {other_meta.tokenizer_hash}); an ensemble averages "
                                  "next-token probabilities, so every member must use the same token ids")
            members.append(member)
        model = Ensemble(members)
    model.to(inference_dtype(dev, dtype)).eval()  # after the adapter: its weights take the same dtype
    if compile:
        from owngpt.generate.compiled import compile_decoding

        compile_decoding(model)
    return Generator(model, tokenizer, meta)


def _existing(path: str | Path) -> str | Path:
    if not Path(path).exists():
        raise OwnGPTError(f"checkpoint {path} does not exist: give a run folder (e.g. runs/pretrain) or a "
                          "checkpoint folder (RUN/best, RUN/checkpoints/step_0001000)")
    return path
