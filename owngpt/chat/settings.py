"""Chat's sampling defaults: what `owngpt chat`, its --help, evaluation and the server start from (no torch import)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from owngpt.generate.settings import GenerationConfig

# Mildly creative, nucleus + top-k, a light repetition penalty (small models loop without it).
CHAT_DEFAULTS = GenerationConfig(max_new_tokens=128, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1)


def chat_generation_config(base: GenerationConfig | None = None, **overrides: Any) -> GenerationConfig:
    """`base` (default CHAT_DEFAULTS) with overrides; overrides that are None keep the default."""
    return replace(base or CHAT_DEFAULTS, **{k: v for k, v in overrides.items() if v is not None})
