"""THE masked log-likelihood: equal to a direct computation."""

from __future__ import annotations

import math

import pytest

import torch
import torch.nn.functional as F

from gen_fixtures import model, tok  # noqa: F401 - fixtures
from owngpt.errors import OwnGPTError
from owngpt.generate import (
    sequence_logprob,
    sequence_logprobs,
)


def test_sequence_logprob_matches_a_direct_computation(tok, model):
    ids = tok.encode("the quick brown fox")
    mask = [0] * 4 + [1] * (len(ids) - 4)
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids]))[0].float(), -1)
    want = sum(logp[i - 1, ids[i]].item() for i in range(len(ids)) if mask[i])
    assert math.isclose(sequence_logprob(model, ids, mask), want, rel_tol=1e-5)
    items = [(ids, mask), (ids[:6], [0, 1, 1, 1, 1, 1]), (ids[:1], [1])]
    batched = sequence_logprobs(model, items)
    single = [sequence_logprob(model, i, m) for i, m in items]
    assert batched[2] == 0.0 and all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(batched, single))


def test_token_nll_batched_equals_alone_and_restores_the_mode(tok, model):
    """Batches of unequal lengths (right-padded) score each sequence as it scores alone; a sequence may be one
    token longer than the context (the model sees all but its last token); the train/eval mode is kept."""
    from owngpt.generate.scoring import token_nll

    g = torch.Generator().manual_seed(0)
    block = model.cfg.block_size
    items = []
    for n in (2, 9, 30, block + 1):
        ids = torch.randint(0, tok.vocab_size, (n,), generator=g).tolist()
        mask = torch.randint(0, 2, (n,), generator=g).tolist()
        items.append((ids, mask))
    model.train()
    together = token_nll(model, items, batch_size=3)
    assert model.training
    model.eval()
    for item, (nll, count) in zip(items, together):
        alone = token_nll(model, [item])[0]
        assert count == alone[1] == sum(item[1][1:])
        assert math.isclose(nll, alone[0], rel_tol=1e-5, abs_tol=1e-4)
        ids, mask = item
        with torch.no_grad():
            logp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0].float(), dim=-1)
        direct = -sum(float(logp[i - 1, ids[i]]) for i in range(1, len(ids)) if mask[i])
        assert math.isclose(nll, direct, rel_tol=1e-5, abs_tol=1e-4)
    with pytest.raises(OwnGPTError, match="context"):
        token_nll(model, [([1] * (block + 2), [1] * (block + 2))])
