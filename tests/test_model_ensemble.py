"""Ensembles: the average of the members' probabilities, usable wherever one model is, refused across tokenizers."""

from __future__ import annotations

import pytest
import torch

from gen_fixtures import greedy, random_gpt, save_run, tok  # noqa: F401 - tok is a fixture
from owngpt.errors import OwnGPTError
from owngpt.model.ensemble import Ensemble


def test_ensemble_probabilities_are_the_mean_of_the_members(tok):
    a, b = random_gpt(tok.vocab_size, seed=0), random_gpt(tok.vocab_size, seed=1)
    ens = Ensemble([a, b]).eval()
    idx = torch.randint(0, tok.vocab_size, (2, 10))
    with torch.no_grad():
        expected = (a(idx).softmax(-1) + b(idx).softmax(-1)) / 2
        got = ens(idx).exp()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(-1), torch.ones(2, 10))


def test_ensemble_of_a_model_with_itself_is_the_model(tok):
    from owngpt.generate import generate_ids

    a = random_gpt(tok.vocab_size, seed=3)
    ens = Ensemble([a, a]).eval()
    idx = torch.randint(0, tok.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(ens(idx), a(idx).log_softmax(-1), rtol=1e-5, atol=1e-5)
    prompt = tok.encode("the quick")
    assert generate_ids(ens, [prompt], greedy(15)) == generate_ids(a, [prompt], greedy(15))


def test_left_padding_changes_nothing_in_an_ensemble(tok):
    ens = Ensemble([random_gpt(tok.vocab_size, seed=0), random_gpt(tok.vocab_size, seed=1)]).eval()
    ids = torch.randint(0, tok.vocab_size, (1, 8))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    valid = torch.tensor([[False] * 3 + [True] * 8])
    with torch.no_grad():
        torch.testing.assert_close(ens(padded, valid=valid)[:, 3:], ens(ids), rtol=1e-5, atol=1e-5)


def test_loading_an_ensemble_and_refusing_other_tokenizers(tmp_path, tok):
    import owngpt
    from owngpt.tokenizer import train_char

    first = save_run(tmp_path, tok, random_gpt(tok.vocab_size, seed=0), "a")
    second = save_run(tmp_path, tok, random_gpt(tok.vocab_size, seed=1), "b")
    loaded = owngpt.load(first, device="cpu", ensemble=[second])
    assert isinstance(loaded.model, Ensemble) and len(loaded.model.members) == 2
    assert isinstance(loaded.generate("the", max_new_tokens=5, seed=1), str)
    other_tok = train_char(["xyz"])
    third = save_run(tmp_path, other_tok, random_gpt(other_tok.vocab_size, seed=2), "c")
    with pytest.raises(OwnGPTError, match="different tokenizers"):
        owngpt.load(first, device="cpu", ensemble=[third])
    with pytest.raises(OwnGPTError, match="at least two"):
        Ensemble([random_gpt(tok.vocab_size)])
