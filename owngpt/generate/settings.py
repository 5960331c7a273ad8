"""Generation settings: GenerationConfig (what every sampler, beam search and reply reads) and its checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from owngpt.config import unknown_key
from owngpt.errors import OwnGPTError

# Below this temperature, logits / temperature overflow to inf and the probabilities become NaN (1e-45 does);
# 1e-4 already samples like greedy.
MIN_TEMPERATURE = 1e-4
SEEDS = 2**64  # a seed is a 64-bit unsigned integer, as torch.Generator.manual_seed takes it


@dataclass
class GenerationConfig:
    """How to generate; the defaults sample at temperature 1 with no filtering."""

    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off; divides positive logits, multiplies negative ones
    frequency_penalty: float = 0.0  # OpenAI's: minus this times the count of the token among the generated ones
    presence_penalty: float = 0.0  # OpenAI's: minus this once a token has been generated at all
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit (-100..100)
    no_repeat_ngram: int = 0
    num_beams: int = 1
    num_return: int = 1  # results per prompt: samples, or the best distinct finished beams (at most num_beams)
    length_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None  # 0 <= seed < 2**64; same seed, settings and batch -> same text (see the module docstring)
    truncate: Literal["error", "left"] = "error"  # prompt longer than the context

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        checks = [
            (_is_int(self.max_new_tokens) and self.max_new_tokens >= 1, "max_new_tokens must be an integer >= 1"),
            (_is_num(self.temperature) and (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature < math.inf),
             f"temperature must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE}, not {self.temperature!r}"),
            (_is_int(self.top_k) and self.top_k >= 0, "top_k must be an integer >= 0 (0 = off)"),
            (_is_num(self.top_p) and 0 < self.top_p <= 1, "top_p must be in (0, 1] (1 = off)"),
            (_is_num(self.repetition_penalty) and 0 < self.repetition_penalty < math.inf,
             "repetition_penalty must be a finite number > 0 (1 = off, 1.1-1.3 is typical)"),
            (all(_is_num(v) and -2 <= v <= 2 for v in (self.frequency_penalty, self.presence_penalty)),
             "frequency_penalty and presence_penalty must be numbers from -2 to 2 (0 = off)"),
            (isinstance(self.logit_bias, dict) and all(_is_int(k) and k >= 0 and _is_num(v) and -100 <= v <= 100
                                                       for k, v in self.logit_bias.items()),
             "logit_bias maps token ids (integers >= 0) to numbers from -100 to 100"),
            (_is_int(self.no_repeat_ngram) and self.no_repeat_ngram >= 0, "no_repeat_ngram must be an integer >= 0"),
            (_is_int(self.num_beams) and self.num_beams >= 1, "num_beams must be an integer >= 1"),
            (_is_int(self.num_return) and self.num_return >= 1, "num_return must be an integer >= 1"),
            (not (_is_int(self.num_beams) and _is_int(self.num_return)) or self.num_beams == 1
             or self.num_return <= self.num_beams,
             f"num_return {self.num_return} with num_beams {self.num_beams}: beam search keeps {self.num_beams} "
             f"beams, so at most {self.num_beams} distinct results"),
            (_is_num(self.length_penalty) and math.isfinite(self.length_penalty), "length_penalty must be a finite number"),
            (all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty strings"),
            (self.seed is None or (_is_int(self.seed) and 0 <= self.seed < SEEDS),
             f"seed must be None or an integer from 0 to 2**64 - 1, not {self.seed!r}"),
            (self.truncate in ("error", "left"), "truncate must be 'error' or 'left'"),
        ]
        for ok, message in checks:
            if not ok:
                raise OwnGPTError(f"generation setting: {message}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def make_config(base: GenerationConfig | None = None, **overrides: Any) -> GenerationConfig:
    """`base` (default GenerationConfig()) with keyword overrides; an unknown name is an error naming the nearest."""
    valid = [f.name for f in fields(GenerationConfig)]
    for key in overrides:
        if key not in valid:
            raise unknown_key(key, valid, "the generation settings")
    return replace(base or GenerationConfig(), **overrides)
