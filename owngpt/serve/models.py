"""The models a server answers with: checkpoints and LoRA adapters, each under its own id (the request's `model`).

Adapters are applied to the first checkpoint and share its weights in memory: each adapter model is a copy of the
base's modules holding the *same* parameter tensors, plus its own small LoRA matrices, so serving ten personas
costs one base model and ten adapters.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from owngpt.chat.reply import ReplyModel, load_reply_model, resolve_system_prompt
from owngpt.errors import OwnGPTError


@dataclass
class ServedModel:
    """One model id: a ReplyModel (owngpt.chat.reply) with where it came from."""

    id: str
    reply: ReplyModel
    path: str
    adapter: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def block_size(self) -> int:
        return self.reply.model.cfg.block_size

    @property
    def max_reply_tokens(self) -> int:
        """The most new tokens one chat reply may have: half the context (owngpt.chat.reply.reply_config)."""
        return max(1, self.block_size // 2)

    def card(self) -> dict[str, Any]:
        """The /v1/models entry (OpenAI's fields, then owngpt's)."""
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "owngpt",
                "context_length": self.block_size, "max_reply_tokens": self.max_reply_tokens,
                "system_prompt": self.reply.system, "base": self.path, "adapter": self.adapter}


def model_id(path: str | Path) -> str:
    """A run folder's name (RUN/best and RUN/checkpoints/step_N are named after RUN)."""
    p = Path(path).resolve()
    if p.name == "best":
        return p.parent.name
    if p.parent.name == "checkpoints":
        return f"{p.parent.parent.name}-{p.name}"
    return p.name


def parse_adapter(spec: str) -> tuple[str, str]:
    """NAME=DIR (or a bare DIR, named after its run folder: runs/alice/adapter -> alice) -> (name, dir)."""
    name, sep, path = spec.partition("=")
    if not sep:
        path = spec
        p = Path(spec.rstrip("/"))
        name = p.parent.name if p.name == "adapter" else p.name
    if not name or not path:
        raise OwnGPTError(f"--adapter {spec!r}: give NAME=DIR (e.g. alice=runs/alice/adapter)")
    return name, path


def with_adapter(base: ReplyModel, adapter: str | Path, system: str | None = None) -> ReplyModel:
    """`base` with a LoRA adapter applied, sharing the base's parameter tensors (only the adapter's own matrices
    are new). Its system prompt: `system`, else the one the adapter's sft run was fine-tuned with."""
    from owngpt.checkpoint.adapter import adapter_run_meta, load_adapter

    shared = {id(p): p for p in base.model.parameters()}  # deepcopy hands these back as they are
    model = copy.deepcopy(base.model, memo=shared)
    load_adapter(adapter, model, base.meta)
    model.to(next(base.model.parameters()).dtype).eval()  # the adapter's weights in the base's dtype
    meta = adapter_run_meta(adapter) or base.meta
    return ReplyModel(model, base.tokenizer, meta, resolve_system_prompt(system, None, meta))


def load_served(runs: list[str], adapters: list[str] = (), *, device: str = "auto",
                system: str | None = None, dtype: str = "auto", compile: bool = False) -> dict[str, ServedModel]:
    """{id: ServedModel} for each run and each adapter (applied to the first run: a persona per adapter). Two
    models with the same id is an error naming both. compile: every model's one-row decoding through torch.compile
    (owngpt/generate/compiled.py), compiled before the server starts."""
    if not runs:
        raise OwnGPTError("serve needs at least one checkpoint: owngpt serve RUN [RUN ...]")
    served: dict[str, ServedModel] = {}

    def add(m: ServedModel) -> None:
        if m.id in served:
            raise OwnGPTError(f"two models would both be called {m.id!r} ({served[m.id].path} and {m.path}): name the "
                              "adapter (--adapter NAME=DIR) or serve the run folders from differently named folders")
        served[m.id] = m

    for run in runs:
        add(ServedModel(model_id(run), load_reply_model(run, device=device, system=system, dtype=dtype), run))
    base = served[model_id(runs[0])].reply
    for spec in adapters:
        name, path = parse_adapter(spec)
        add(ServedModel(name, with_adapter(base, path, system), runs[0], path))
    if compile:
        from owngpt.generate.compiled import compile_decoding

        for m in served.values():
            compile_decoding(m.reply.model)
    return served
