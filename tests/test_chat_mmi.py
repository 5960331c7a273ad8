"""MMI: reranking on the same context tokens, scores from the one scoring function, a trained backward model."""

from __future__ import annotations

import math


from chat_fixtures import PAIRS, backward, tiny_gpt, tok  # noqa: F401 - fixtures
from owngpt.chat import (
    mmi_rerank,
)
from owngpt.data.conversations import reverse_conversation
from owngpt.generate import sequence_logprob, sequence_logprobs
from owngpt.tokenizer import render_conversation


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
