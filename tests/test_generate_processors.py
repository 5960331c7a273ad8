"""Logits processors: top-k / top-p filters, CTRL's repetition penalty, the n-gram blocker."""

from __future__ import annotations


import torch

from owngpt.generate.processors import NGramBlocker, apply_repetition_penalty, apply_top_k, apply_top_p


def test_top_k_and_top_p_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, 0.0, 5.0, -1.0]])
    assert torch.isinf(apply_top_k(logits, 2)).tolist() == [[True, False, False, True], [False, False, False, True]]
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = ~torch.isinf(apply_top_p(probs.log(), 0.8))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.8
    kept = ~torch.isinf(apply_top_p(probs.log(), 0.81))
    assert kept.tolist() == [[True, True, True, False]]


def test_repetition_penalty_is_right_for_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 0.0]])
    seen = torch.tensor([[True, True, False, False, True]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, -3.0, 0.0]]  # divide positive, multiply negative, unseen unchanged
    p_before, p_after = logits.softmax(-1), out.softmax(-1)
    assert p_after[0, 0] < p_before[0, 0] and p_after[0, 1] < p_before[0, 1]  # both seen tokens less likely
    # the GPT2-chitchat bug (dividing every logit) would make the negative one *more* likely
    wrong = torch.where(seen, logits / 2.0, logits).softmax(-1)
    assert wrong[0, 1] > p_before[0, 1]
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)


def test_ngram_blocker():
    b = NGramBlocker(3, [1, 2, 3, 1, 2])
    assert b.banned() == {3}
    b.append(4)
    assert b.banned() == set()  # (2, 4) never seen before
    c = b.copy()
    c.append(1)
    assert b.tokens == [1, 2, 3, 1, 2, 4]
