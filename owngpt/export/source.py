"""The model an export writes: a run or checkpoint folder loaded whole (fp32, CPU, a LoRA adapter merged in), with
what no export can take refused before any weights are read. `owngpt export-hf` and `owngpt export-gguf` both load
through `load_for_export`, so they accept and refuse the same runs."""

from __future__ import annotations

from pathlib import Path

from owngpt.checkpoint.format import best_or_latest, load_model, read_meta
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import GPT
from owngpt.tokenizer import Tokenizer


def load_for_export(run: str | Path, target: str, command: str, adapter: str | Path | None = None) -> tuple[GPT, Tokenizer]:
    """The model and tokenizer of a run or checkpoint folder for an export to `target` (named in the errors, e.g.
    "a Hugging Face folder"; `command` is the verb and its destination, e.g. "export-hf DIR"): only owngpt's GPT,
    only a whole model (a LoRA run's adapters are merged into their base with `adapter`), only with its tokenizer."""
    ckpt = best_or_latest(run)
    meta = read_meta(ckpt)
    if meta.arch != "gpt":
        raise OwnGPTError(f"{ckpt} holds a {meta.arch} model: only owngpt's GPT (the gpt2 and modern presets) "
                          f"exports to {target}")
    if meta.weights_filtered:
        base = meta.recorded("sft").get("base") or "BASE"
        verb, dest = command.split(" ", 1)
        raise OwnGPTError(f"{ckpt} holds only LoRA adapters, which {target} cannot use without their base: export "
                          f"the base with the adapter merged in: owngpt {verb} {base} {dest} --adapter {Path(run) / 'adapter'}")
    model, meta, tok = load_model(ckpt, device="cpu")
    if tok is None:
        raise OwnGPTError(f"{ckpt} carries no tokenizer folder, and {target} needs the tokenizer")
    if adapter is not None:
        from owngpt.checkpoint.adapter import load_adapter
        from owngpt.model.lora import merge_lora

        load_adapter(adapter, model, meta)
        merge_lora(model)  # W + B @ A: plain Linear layers under the base's names again
    return model.float(), tok
