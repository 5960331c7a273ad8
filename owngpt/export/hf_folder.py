"""`owngpt export-hf`: a run as a Hugging Face folder that `AutoModelForCausalLM` and `AutoTokenizer` load with
no custom code and no network.

    config.json, model.safetensors   GPT-2 layout (hf.py) for GPT-2 maths, Llama layout (hf_llama.py) for the modern
    tokenizer.json                   the tokenizer's own Hugging Face definition (one pre-tokenizer rule added: below)
    tokenizer_config.json            PreTrainedTokenizerFast, its special tokens, model_max_length = block_size
    chat_template.jinja              the chat format from owngpt.tokenizer.template (never a second copy of it)
    generation_config.json           the ids where owngpt stops a reply, so HF's generate() stops there too

`tokenizer.apply_chat_template` renders the conversation to one string and tokenizes it whole, while owngpt encodes
each header ("user\\n") and each content on its own. The two meet everywhere but one place: a content that starts
with whitespace, whose first spaces the whole-string pre-tokenizer would join to the header's newline ("\\n " is a
GPT-2 pre-token). The exported tokenizer.json therefore first cuts a role header off the start of each piece of text
between special tokens (`HEADER_RULE`). The cost: HF's plain `encode("user\\n  x")`, a text that itself starts with
a role header and then whitespace, splits after the newline where owngpt's `encode` would not.

Not handled: a user who types "<|im_end|>" (or another special token's name) in a message. owngpt encodes it as
plain text; Hugging Face matches special tokens anywhere in the rendered string, so apply_chat_template gives the
special id there (as it does for every ChatML model on the Hub). No tokenizer setting tells the template's own
specials from typed ones; render with owngpt (`render_conversation`) where untrusted text must stay text.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from owngpt.errors import OwnGPTError
from owngpt.export.hf import hf_config_from_gpt, save_hf_gpt2
from owngpt.export.hf_llama import llama_problem, save_hf_llama
from owngpt.export.source import load_for_export
from owngpt.io import atomic_write_text, output_dir
from owngpt.model.gpt import GPT
from owngpt.tokenizer import ROLES, Tokenizer, chat_template_jinja

# Isolates "{role}\n" at the start of a piece of text (\A: the piece's start, not a line's), so the content after it
# is pre-tokenized alone, as render_message encodes it.
HEADER_RULE = {"type": "Split", "pattern": {"Regex": r"\A(?:" + "|".join(ROLES) + r")\n"},
               "behavior": "Isolated", "invert": False}


def hf_layout(model: GPT) -> str:
    """"gpt2" or "llama": the Hugging Face architecture that computes exactly what `model` computes; OwnGPTError
    naming the settings that fit neither."""
    arch = getattr(model, "arch", "gpt")
    if arch != "gpt":
        raise OwnGPTError(f"this is a {arch} model: only owngpt's GPT (the gpt2 and modern presets) has a Hugging "
                          "Face causal-LM layout (GPT-2 or Llama)")
    cfg = model.cfg
    problem = llama_problem(cfg)
    if problem is None:
        return "llama"
    try:
        hf_config_from_gpt(cfg)  # raises with the reason when the maths are not GPT-2's
        return "gpt2"
    except OwnGPTError as gpt2_problem:
        raise OwnGPTError(f"this model fits neither Hugging Face layout: GPT-2's because {gpt2_problem}; "
                          f"Llama's because {problem}") from None


def hf_tokenizer_spec(tok: Tokenizer) -> dict[str, Any]:
    """tokenizer.json for the export: the tokenizer's definition, with every token the chat template writes by name
    an added special token (so the rendered "[SEP]" is one id, not "[", "sep", "]"), and in ChatML HEADER_RULE before
    its pre-tokenizer (see the module docstring)."""
    spec = copy.deepcopy(tok.spec)
    added = {entry["content"] for entry in spec.get("added_tokens") or []}
    vocab = spec["model"]["vocab"]
    named = [*tok.special_ids] + [tok.chat_format[k] for k in ("start", "sep") if k in tok.chat_format]
    spec["added_tokens"] = [*(spec.get("added_tokens") or []), *(
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True} for t in dict.fromkeys(named) if t not in added)]
    if tok.chat_format["name"] != "chatml":
        return spec  # no role headers in the other formats
    old = spec.get("pre_tokenizer")
    rest = [] if old is None else old["pretokenizers"] if old.get("type") == "Sequence" else [old]
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [HEADER_RULE, *rest]}
    return spec


def hf_tokenizer_config(tok: Tokenizer, model_max_length: int) -> dict[str, Any]:
    """tokenizer_config.json: the generic fast tokenizer over tokenizer.json (no class that would rebuild it), and
    the special tokens named as config.json names their ids."""
    names = {i: name for name, i in tok.special_ids.items()}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": names[tok.eot_id], "eos_token": names[tok.eot_id], "pad_token": names[tok.pad_id],
        "unk_token": tok.spec["model"].get("unk_token"),  # None for byte-level BPE: every byte has a token
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,  # decode exactly, as owngpt does (no " ." -> "." clean-up)
    }


def save_hf_tokenizer(tok: Tokenizer, directory: str | Path, model_max_length: int) -> Path:
    """Write tokenizer.json, tokenizer_config.json and chat_template.jinja (AutoTokenizer.from_pretrained reads them)."""
    directory = output_dir(directory)
    atomic_write_text(directory / "tokenizer.json", json.dumps(hf_tokenizer_spec(tok), ensure_ascii=False, indent=1))
    config = hf_tokenizer_config(tok, model_max_length)
    atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, ensure_ascii=False, indent=2))
    atomic_write_text(directory / "chat_template.jinja", chat_template_jinja(tok))
    return directory


def export_hf(model: GPT, tok: Tokenizer, directory: str | Path) -> str:
    """Write the whole folder (module docstring) for `model` and its tokenizer; returns the layout, "gpt2" or "llama"."""
    layout = hf_layout(model)
    if tok.vocab_size > model.cfg.vocab_size:
        raise OwnGPTError(f"the tokenizer has {tok.vocab_size} tokens but the model only {model.cfg.vocab_size} "
                          "embeddings: they do not belong together")
    directory = output_dir(directory)
    save = save_hf_llama if layout == "llama" else save_hf_gpt2
    save(model, directory, tokenizer=tok)  # weights, config.json, generation_config.json
    save_hf_tokenizer(tok, directory, model.cfg.block_size)
    return layout


def export_run(run: str | Path, directory: str | Path, adapter: str | Path | None = None) -> str:
    """`owngpt export-hf RUN DIR`: load_for_export, then export_hf; returns the layout written."""
    output_dir(directory, create=False)  # a wrong DIR fails before any loading
    model, tok = load_for_export(run, "a Hugging Face folder", "export-hf DIR", adapter)
    return export_hf(model, tok, directory)
