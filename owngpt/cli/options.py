"""Options that several verbs share, declared once: sampling, device, adapter, resume and the training budget.

Each function returns a fresh typer option; a verb passes its own default (taken from the settings object that
owns it, e.g. CHAT_DEFAULTS for `chat`), so the help text always shows the default that applies.
"""

from __future__ import annotations

from typing import Any

import typer


def device() -> Any:
    return typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps (auto: CUDA, else MPS, else CPU).")


def adapter() -> Any:
    return typer.Option(None, "--adapter", help="LoRA adapter folder (RUN/adapter from `owngpt sft --lora`) to apply "
                        "to CHECKPOINT.")


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
