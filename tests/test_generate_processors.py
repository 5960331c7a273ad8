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


def test_per_row_settings_give_what_each_row_gets_alone():
    """One pass over rows with different temperature / top-k / top-p / penalties equals each row processed and
    drawn on its own (the server batches requests with different settings)."""
    from owngpt.generate import GenerationConfig
    from owngpt.generate.processors import LogitsChain

    torch.manual_seed(0)
    logits = torch.randn(4, 50) * 3
    cfgs = [GenerationConfig(temperature=0.0), GenerationConfig(temperature=0.7, top_k=5, repetition_penalty=1.3),
            GenerationConfig(temperature=1.3, top_p=0.6, frequency_penalty=1.5, presence_penalty=0.5),
            GenerationConfig(temperature=1.0, logit_bias={7: 100.0})]
    prompts = [[1, 2, 3], [4, 5], [6], [7, 8]]
    uniforms = torch.rand(4)
    chains = [LogitsChain(c, [p], 50, None, logits.device) for c, p in zip(cfgs, prompts)]
    for chain in chains:
        chain.advance(torch.tensor([9]))  # a generated token: penalised by repetition and frequency alike
    alone = torch.cat([ch.sample(ch(logits[i: i + 1]), uniforms[i: i + 1]) for i, ch in enumerate(chains)])
    together = chains[0]
    for ch in chains[1:]:
        together.extend(ch)
    assert together.rows == 4
    assert torch.equal(together.sample(together(logits), uniforms), alone)
    assert alone[0] == logits[0].argmax() and alone[3] == 7  # greedy; +100 all but forces a token
    together.select([3, 1])
    assert together.rows == 2 and together.bias[0, 7] == 100 and together.bias[1, 7] == 0


def test_openai_penalties_subtract_per_count_on_generated_tokens_only():
    from owngpt.generate import GenerationConfig
    from owngpt.generate.processors import LogitsChain

    chain = LogitsChain(GenerationConfig(frequency_penalty=0.5, presence_penalty=0.25), [[0, 1]], 4, None,
                        torch.device("cpu"))
    for t in (2, 2, 3):
        chain.advance(torch.tensor([t]))
    out = chain(torch.zeros(1, 4))
    assert out.tolist() == [[0.0, 0.0, -2 * 0.5 - 0.25, -0.5 - 0.25]]  # the prompt's tokens 0, 1 are not penalised


def test_draw_inverts_the_distribution_and_never_picks_a_banned_token():
    from owngpt.generate.processors import draw

    logits = torch.tensor([[0.0, float("-inf"), 0.0, float("-inf")]]).repeat(5, 1)  # half and half on 0 and 2
    u = torch.tensor([0.0, 0.49, 0.5, 0.99, 1.0 - 1e-9])
    assert draw(logits, u).tolist() == [0, 0, 2, 2, 2]
    torch.manual_seed(1)
    probs = torch.tensor([0.1, 0.6, 0.3])
    counts = torch.bincount(draw(probs.log().repeat(20000, 1), torch.rand(20000)), minlength=3).float() / 20000
    assert torch.allclose(counts, probs, atol=0.015)
