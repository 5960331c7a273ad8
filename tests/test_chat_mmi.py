"""MMI: the reversed dialogue, reranking on the same context tokens, a trained backward model."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F

from chat_fixtures import (  # noqa: F401 - fixtures
    PAIRS, backward, history, invoke, json_lines, prompt_len, run, save_run, session_of, tiny_gpt, tok,
)
from owngpt.chat import (
    ChatSession,
    chat_generation_config,
    fit_history,
    handle_line,
    mmi_rerank,
    resolve_system_prompt,
    sample_conversation,
)
from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.config import ModelConfig
from owngpt.data.conversations import reverse_conversation
from owngpt.errors import OwnGPTError
from owngpt.generate import sequence_logprob, sequence_logprobs
from owngpt.model.gpt import GPT
from owngpt.tokenizer import render_conversation, train_char


def test_reverse_conversation_plays_the_dialogue_backwards_with_roles_swapped(tok):
    conv = [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]
    assert reverse_conversation(conv) == [
        {"role": "user", "content": "a2"}, {"role": "assistant", "content": "u2"},
        {"role": "user", "content": "a1"}, {"role": "assistant", "content": "u1"},
    ]
    # messages after the last reply are ignored; a leading assistant message has nothing to predict after it
    assert reverse_conversation(conv[1:] + [{"role": "user", "content": "u3"}]) == reverse_conversation(conv)
    assert reverse_conversation([{"role": "assistant", "content": "a0"}, *conv[1:3]]) == [
        {"role": "user", "content": "a1"}, {"role": "assistant", "content": "u1"}]
    # consecutive messages of one role are joined (in reversed order)
    assert reverse_conversation([{"role": "user", "content": "u1"}, {"role": "user", "content": "u2"},
                                 {"role": "assistant", "content": "a"}]) == [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "u2\nu1"}]
    for no_context in ([], [{"role": "user", "content": "u"}], [conv[0], {"role": "assistant", "content": "a"}]):
        assert reverse_conversation(no_context) is None
    # the loss mask covers exactly the original user turns
    ids, mask = render_conversation(tok, reverse_conversation(conv))
    scored = tok.decode([i for i, m in zip(ids, mask) if m and i != tok.im_end_id])
    assert "u2" in scored and "u1" in scored and "a1" not in scored and "a2" not in scored


def test_mmi_rerank_picks_the_best_backward_score(tok):
    backward = tiny_gpt(tok, seed=3)
    hist = [{"role": "system", "content": "sys"}, {"role": "user", "content": "do you like cats?"}]
    candidates = ["i love cats.", "take an umbrella.", "no.", ""]
    best, scores = mmi_rerank(backward, tok, hist, candidates)
    for cand, score in zip(candidates[:3], scores[:3]):
        ids, mask = render_conversation(tok, reverse_conversation([*hist, {"role": "assistant", "content": cand}]))
        assert math.isclose(score, sequence_logprob(backward, ids, mask), rel_tol=1e-5, abs_tol=1e-5)
    assert scores[3] == -math.inf  # an empty reply never wins
    assert best == candidates[max(range(4), key=lambda i: scores[i])]


def test_mmi_rerank_scores_every_candidate_on_the_same_context_tokens(tok, monkeypatch):
    import owngpt.chat.mmi as chat

    block = 96
    backward = tiny_gpt(tok, block=block, seed=3)
    hist = [{"role": "user", "content": "do you like cats?"}, {"role": "assistant", "content": "i love cats."},
            {"role": "user", "content": "is it raining? " * 2}]
    candidates = ["no.", "take an umbrella. " * 4, "", "i love cats."]
    seen = []

    def spy(model, items, **kwargs):
        seen.extend(items)
        return sequence_logprobs(model, items, **kwargs)

    monkeypatch.setattr(chat, "sequence_logprobs", spy)
    best, scores = mmi_rerank(backward, tok, hist, candidates)
    assert len(seen) == 3 and scores[2] == -math.inf  # the empty candidate is not scored
    scored = [[t for t, m in zip(ids, mask) if m] for ids, mask in seen]
    assert scored[0] == scored[1] == scored[2]  # the same context tokens, whatever the candidate's length
    assert tok.decode(scored[0]) == "is it raining? is it raining? <|im_end|>"  # the newest user turn, whole
    full = render_conversation(tok, reverse_conversation([*hist, {"role": "assistant", "content": candidates[1]}]))[0]
    assert len(full) > block and all(len(ids) <= block for ids, _ in seen)  # the long candidate was cut to fit
    assert tok.decode(seen[1][0]).split("<|im_end|>")[0].endswith("umbrella. ")  # ... keeping its end
    for (ids, mask), score in zip(seen, [scores[0], scores[1], scores[3]]):
        assert math.isclose(score, sequence_logprob(backward, ids, mask), rel_tol=1e-5, abs_tol=1e-5)
    assert best == candidates[max(range(4), key=lambda i: scores[i])]


def test_trained_backward_model_prefers_the_reply_that_explains_the_context(tok, backward):
    for question, answer in PAIRS:
        candidates = [a for _, a in PAIRS]
        best, scores = mmi_rerank(backward, tok, [{"role": "user", "content": question}], candidates)
        assert best == answer, (question, scores)
