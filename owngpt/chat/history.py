"""History fitting: which messages of a conversation the model sees for its next reply, within the context."""

from __future__ import annotations

from typing import Callable

from owngpt.errors import OwnGPTError
from owngpt.tokenizer import Message, render_conversation


def _prompt_length(tokenizer, messages: list[Message]) -> int:
    return len(render_conversation(tokenizer, messages, add_generation_prompt=True)[0])


def fit_history(tokenizer, system: str | None, messages: list[Message], max_prompt_tokens: int) -> list[Message]:
    """The messages to render for the next reply (system message first when `system`), at most
    `max_prompt_tokens` tokens long with the generation prompt included.

    Drops the oldest turns first, a whole user/assistant pair at a time (a kept turn always starts with the
    user's message); always keeps the system prompt and the newest message. If even those do not fit, the
    newest message is cut on the left (its end, the part just typed, is what the reply answers). Raises
    OwnGPTError only when the system prompt alone leaves no room."""
    head = [{"role": "system", "content": system}] if system else []
    turns = [m for m in messages if m["role"] != "system"]
    if not turns:
        raise ValueError("fit_history needs at least one message to answer")

    def fits(start: int) -> bool:
        return _prompt_length(tokenizer, head + turns[start:]) <= max_prompt_tokens

    # Valid starting points: the beginning, and every user message. Dropping a prefix never makes the
    # rendered prompt longer, so the earliest start that fits is found by binary search.
    starts = sorted({0, *(i for i, m in enumerate(turns) if m["role"] == "user"), len(turns) - 1})
    lo, hi = 0, len(starts) - 1
    if fits(starts[lo]):
        return head + turns
    while hi - lo > 1:  # invariant: starts[lo] does not fit
        mid = (lo + hi) // 2
        if fits(starts[mid]):
            hi = mid
        else:
            lo = mid
    if fits(starts[hi]):
        return head + turns[starts[hi]:]
    return head + [_cut_left(tokenizer, head, turns[-1], max_prompt_tokens)]


def _cut_left(tokenizer, head: list[Message], last: Message, max_prompt_tokens: int) -> Message:
    """`last` with as many characters of its end as fit after `head`."""
    role = last["role"]
    kept = keep_end(last["content"], lambda text: _prompt_length(
        tokenizer, head + [{"role": role, "content": text}]) <= max_prompt_tokens)
    if kept is None:
        empty = _prompt_length(tokenizer, head + [{"role": role, "content": ""}])
        raise OwnGPTError(f"the system prompt leaves no room for a message: with it the prompt is {empty} tokens, "
                          f"but only {max_prompt_tokens} fit (context minus max_new_tokens); use a shorter "
                          "system prompt (/system TEXT or --system) or fewer --max-new-tokens")
    return {"role": role, "content": kept}


def keep_end(text: str, fits: Callable[[str], bool]) -> str | None:
    """The longest end of `text` that `fits` (binary search on the characters kept: a shorter end must never fit
    worse); None when not even "" fits."""
    if fits(text):
        return text
    if not fits(""):
        return None
    lo, hi = 0, len(text)  # invariant: the last lo characters fit; the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[len(text) - mid:]):
            lo = mid
        else:
            hi = mid - 1
    return text[len(text) - lo:] if lo else ""
