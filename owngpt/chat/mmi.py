"""MMI reranking (DialoGPT, GPT2-chitchat): keep the candidate reply from which a backward model best predicts
the conversation.

A backward model trained with `owngpt sft --reverse` on `reverse_conversation(...)` (owngpt/data/conversations.py)
scores log p(context | reply); generic replies ("I don't know") predict any context poorly, so MMI favours replies
that are about the conversation. Scores come from the one scoring function (owngpt/generate/scoring.py).
"""

from __future__ import annotations

import math
from typing import Callable

from owngpt.chat.history import Message, keep_end
from owngpt.data.conversations import reverse_conversation
from owngpt.errors import OwnGPTError
from owngpt.generate.scoring import sequence_logprobs
from owngpt.tokenizer import conversation_start, render_conversation, render_message


def mmi_rerank(backward_model, backward_tok, history_messages: list[Message],
               candidates: list[str]) -> tuple[str, list[float]]:
    """(best candidate, scores): score = log p(reversed context | candidate) under the backward model, the
    sum over the context tokens that `render_conversation` masks in (the original user turns).

    Every candidate is scored on the same context tokens, so sums compare fairly. The reversed context is fitted
    once, to the backward model's context less room for the longest candidate (at most half of it): the oldest
    pairs of the dialogue go first, then the user's newest message keeps its end. A candidate longer than what
    the context leaves keeps its end. An empty candidate scores -inf."""
    if not candidates:
        raise ValueError("mmi_rerank needs at least one candidate")
    convs = [reverse_conversation([*history_messages, {"role": "assistant", "content": c}]) for c in candidates]
    if convs[0] is None:
        raise OwnGPTError("MMI reranking needs a user message before the reply")
    block = backward_model.cfg.block_size

    def length(messages: list[Message]) -> int:
        return len(render_conversation(backward_tok, messages)[0])

    # convs[i] = [candidate i (as "user"), *context]: only the first message differs between candidates
    room = min(max(length(conv[:1]) for conv in convs), block // 2)
    # [start] + reply + context: the conversation's start ([CLS] in the chitchat format) comes once, before the reply
    start = conversation_start(backward_tok)
    context_ids, context_mask = render_conversation(backward_tok, _fit_context(length, convs[0][1:], block - room))
    context_ids, context_mask = context_ids[len(start):], context_mask[len(start):]
    items, scored = [], []
    for i, (cand, conv) in enumerate(zip(candidates, convs)):
        if not cand.strip():
            continue
        reply = conv[0]
        text = keep_end(reply["content"], lambda t: length([{**reply, "content": t}]) + len(context_ids) <= block)
        if text is None:
            raise OwnGPTError(f"the backward model's context ({block} tokens) is too small to score a reply")
        reply_ids = start + render_message(backward_tok, {**reply, "content": text})[0]
        items.append((reply_ids + context_ids, [0] * len(reply_ids) + context_mask))
        scored.append(i)
    scores = [-math.inf] * len(candidates)
    for i, score in zip(scored, sequence_logprobs(backward_model, items)):
        scores[i] = float(score)
    best = max(range(len(candidates)), key=lambda i: scores[i])  # first of equals
    return candidates[best], scores


def _fit_context(length: Callable[[list[Message]], int], context: list[Message], max_tokens: int) -> list[Message]:
    """The newest part of a reversed context within max_tokens tokens: its last (oldest) pairs go first, then
    its first message (the user's newest) keeps its end."""
    keep = len(context)
    while keep > 1 and length(context[:keep]) > max_tokens:
        keep = max(1, keep - 2)  # drop the oldest (user, assistant) pair of the original dialogue
    first = context[0]
    if keep > 1 or length(context[:1]) <= max_tokens:
        return context[:keep]
    text = keep_end(first["content"], lambda t: length([{**first, "content": t}]) <= max_tokens)
    if text is None:
        raise OwnGPTError("the backward model's context is too small: no room for the user's message")
    return [{**first, "content": text}]
