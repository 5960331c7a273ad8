"""Options that several verbs share, declared once: sampling, device, adapter, resume and the training budget.

Each function returns a fresh typer option; a verb passes its own default (taken from the settings object that
owns it, e.g. CHAT_DEFAULTS for `chat`), so the help text always shows the default that applies.
"""

from __future__ import annotations

from typing import Any

import typer


def device() -> Any:
    return typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps (auto: CUDA, else MPS, else CPU).")


def dtype(default: str = "auto", note: str = "") -> Any:
    return typer.Option(default, "--dtype", help="Weights' dtype for generating: auto | float32 | bfloat16 (auto: bf16 on "
                        "CPUs with native bf16 — AMX or avx512_bf16 — and on CUDA GPUs, fp32 elsewhere)." + note)


def compile_decoding() -> Any:
    return typer.Option(False, "--compile", help="Decode one row at a time through torch.compile on the CPU (fp32 "
                        "or int8 weights): 1.4-1.7x the tokens/s of a GPT-2-sized fp32 model, ~4x of a small one, ~1.7x of an "
                        "int8-weight one, after compiling at start: tens of seconds to two minutes (int8-weight: at "
                        "every start; fp32: shorter once Inductor's on-disk cache holds the kernels) (needs a C++ "
                        "compiler such as g++).")


def announce_compile(compile: bool) -> None:
    """--compile's wait, said on stderr before the model loads (the compilation runs inside the load)."""
    if compile:
        typer.echo("compiling the one-row decode step (tens of seconds, up to two minutes for a GPT-2-sized or an "
                   "int8-weight model; Inductor's on-disk cache shortens later starts of fp32 models)...", err=True)


def adapter() -> Any:
    return typer.Option(None, "--adapter", help="LoRA adapter folder (RUN/adapter from `owngpt sft --lora`) to apply "
                        "to CHECKPOINT.")


def ensemble() -> Any:
    return typer.Option([], "--ensemble", help="Another checkpoint with the same tokenizer (repeatable): the model is "
                        "then the ensemble of all of them, averaging their next-token probabilities.")


def moderation() -> Any:
    return typer.Option(None, "--moderation", help="Content filter for replies: 'default' (a small list of strong "
                        "profanity and insults, English and Chinese) or a YAML file of words/patterns; a reply ends "
                        "before the first match. Off unless given.")


def resume() -> Any:
    return typer.Option(None, "--resume", help="auto (continue the run folder's latest checkpoint; the default), none, "
                        "or a checkpoint path.")


def steps(what: str = "Optimizer steps (overrides the preset's train.max_steps).") -> Any:
    return typer.Option(None, "--steps", help=what)


def time() -> Any:
    return typer.Option(None, "--time", help="Wall-clock budget such as 10m, 90s or 1h; without --steps the run is then "
                        "bounded by time alone and the learning rate decays over it.")


def budget_overrides(steps: int | None, time: str | None, resume: str | None = None) -> list[str]:
    """--steps / --time / --resume as config overrides; --time without --steps bounds the run by time alone (the
    preset's step budget is lifted, and the learning rate decays over the time given)."""
    overrides = []
    if time is not None:
        overrides.append(f"train.max_time={time}")
        if steps is None:
            overrides.append("train.max_steps=0")
    if steps is not None:
        overrides.append(f"train.max_steps={steps}")
    if resume is not None:
        overrides.append(f"train.resume={resume}")
    return overrides


# ----------------------------------------------------------------------------- sampling


def temperature(default: float) -> Any:
    return typer.Option(default, "--temperature", help="Sampling temperature; 0 = greedy (always the most likely "
                        "token), otherwise at least 0.0001.")


def top_k(default: int) -> Any:
    return typer.Option(default, "--top-k", help="Sample only from the k most likely tokens; 0 = off.")


def top_p(default: float) -> Any:
    return typer.Option(default, "--top-p", help="Nucleus sampling: the smallest set of tokens holding this "
                        "probability mass; 1 = off.")


def repetition_penalty(default: float) -> Any:
    return typer.Option(default, "--repetition-penalty", help="Make tokens already in the text less likely (CTRL); "
                        "1 = off, 1.1-1.3 typical.")


def max_new_tokens(default: int, note: str = "") -> Any:
    return typer.Option(default, "--max-new-tokens", help="Most tokens to generate" + (f" ({note})" if note else "")
                        + "; generation also stops when the context is full.")


def seed(what: str = "Random seed (0 to 2**64 - 1): the same seed, settings and inputs give the same text.") -> Any:
    return typer.Option(None, "--seed", help=what)


# ----------------------------------------------------------------------------- chat exports


def me() -> Any:
    return typer.Option([], "--me", help="Who you are in the chat exports: your display name or id (QQ number, "
                        "Telegram user id); repeat it for several (your names on different apps). WeChat's is_sender "
                        "and a Telegram full export mark your messages themselves.")


def session_gap() -> Any:
    return typer.Option("1h", "--session-gap", help="A silence longer than this starts a new conversation "
                        "(e.g. 30m, 2h).")


def groups() -> Any:
    return typer.Option("names", "--groups", help="Group chats: names (the others' messages as 'Name: text' lines "
                        "of the user turn), merge (without names) or skip (leave group chats out).")


def date_order() -> Any:
    return typer.Option("auto", "--date-order", help="Date order of WhatsApp exports: auto (from the file's dates), "
                        "dmy, mdy or ymd.")


def block() -> Any:
    return typer.Option(None, "--block", help="A YAML list of words and regex patterns (words: [...], patterns: "
                        "[...], the format of --moderation; 'default' for owngpt's list): every chat message that "
                        "matches is dropped whole before training.")


def dry_run() -> Any:
    return typer.Option(False, "--dry-run", help="Chat exports: only report what would be trained on (counts, your "
                        "share, what is left out, scrubbed examples); write and train nothing.")


def chat_options(me: list[str], session_gap: str, groups: str, date_order: str, block: str | None):
    """The chat-export options of a verb as ChatOptions (the block list loaded, mistakes named)."""
    from owngpt.config import parse_duration
    from owngpt.data.chats.model import ChatOptions, with_block_list
    from owngpt.data.wordlist import load_word_list
    from owngpt.generate.moderation import load_content_filter

    opts = ChatOptions(me=tuple(x for x in me if x.strip()), session_gap=parse_duration(session_gap), groups=groups,
                       date_order=date_order)
    if not block:
        return opts
    words = load_content_filter(block) if block == "default" else load_word_list(block, "block list")
    return with_block_list(opts, words)


def owned(specs: list[str], me: list[str]) -> list[str]:
    """Raw data specs carrying --me (`chat.txt?me=NAME`, read by owngpt/data/chats/); prepared folders and
    built-in corpora as they are."""
    from owngpt.data.chats.model import with_owner
    from owngpt.data.corpus import is_prepared

    return [s if not me or s.startswith("builtin:") or is_prepared(s) else with_owner(s, me) for s in specs]
