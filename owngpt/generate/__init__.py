"""Text generation: settings, the logits chain, the sampling and beam engine, text and stop strings, scoring, and
`owngpt.load(path)`. Chat, `owngpt generate`, the server and evaluation all sample through this package, so a
setting means the same everywhere.

    settings.py    GenerationConfig (what to generate and how) and its checks (no torch import)
    processors.py  the logits chain: vocabulary mask -> repetition penalty -> n-gram ban; top-k, top-p, the draw
    engine.py      prompts fitted to the context, the KV-cache runner, sampling, beam search, streaming
    text.py        incremental UTF-8 decoding and stop strings
    scoring.py     THE masked log-likelihood (perplexity, MMI, evaluation)
    api.py         Generator and load(): a checkpoint ready to generate

The names below are imported on first use, so `from owngpt.generate.settings import GenerationConfig` stays cheap.
"""

from __future__ import annotations

from owngpt.lazy import lazy_exports

_EXPORTS = {
    "owngpt.generate.api": ("Generator", "encode_prompt", "generate", "load"),
    "owngpt.generate.engine": ("fit_prompt", "generate_ids", "generate_texts", "stream_text"),
    "owngpt.generate.scoring": ("sequence_logprob", "sequence_logprobs", "token_nll"),
    "owngpt.generate.settings": ("MIN_TEMPERATURE", "SEEDS", "GenerationConfig", "make_config"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
