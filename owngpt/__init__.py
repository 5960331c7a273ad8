"""owngpt: build your own personalized ChatGPT from scratch — data, tokenizer, GPT, training, chat, generation.

Importing the package is cheap (no torch): `owngpt.load()` imports the model code when first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Sequence

    from owngpt.generate.api import Generator

__version__ = "0.1.0"


def load(path: "str | Path", *, adapter: "str | Path | None" = None, device: str = "auto",
         dtype: str = "auto", ensemble: "Sequence[str | Path]" = (), compile: bool = False) -> "Generator":
    """Load a checkpoint (a run folder or a checkpoint folder) with its tokenizer, optionally applying a LoRA
    adapter, and return a Generator: `.generate(prompt, **settings)`, `.stream(prompt)`, `.model`,
    `.tokenizer`, `.meta`. dtype auto: bf16 weights where the CPU or GPU computes bf16 natively, else fp32.
    ensemble: more checkpoints with the same tokenizer, whose next-token probabilities are averaged with this one's.
    compile: batch-1 CPU decoding through torch.compile (faster tokens after tens of seconds of compiling here, up
    to two minutes for a GPT-2-sized or an int8-weight model)."""
    from owngpt.generate.api import load as _load

    return _load(path, adapter=adapter, device=device, dtype=dtype, ensemble=ensemble, compile=compile)


__all__ = ["load", "__version__"]
