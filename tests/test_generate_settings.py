"""Generation settings: bad values are clear errors."""

from __future__ import annotations

import math

import pytest

from gen_fixtures import greedy, model, tok  # noqa: F401 - fixtures
from owngpt.errors import OwnGPTError
from owngpt.generate import (
    GenerationConfig,
    generate_ids,
)


def test_bad_settings_are_clear_errors():
    for bad in (dict(temperature=-1), dict(top_p=0), dict(top_k=-2), dict(num_beams=0), dict(max_new_tokens=0),
                dict(repetition_penalty=0), dict(stop=[""]), dict(truncate="right"), dict(top_p=math.nan),
                dict(repetition_penalty=math.inf), dict(length_penalty=math.nan), dict(seed=-1), dict(seed=2**64)):
        with pytest.raises(OwnGPTError, match="generation setting"):
            GenerationConfig(**bad)
    assert GenerationConfig(stop="\n").stop == ["\n"]


def test_num_return_is_at_most_num_beams_with_beam_search():
    for bad in (dict(num_return=0), dict(num_return=1.5), dict(num_return=True), dict(num_return="3", num_beams=4)):
        with pytest.raises(OwnGPTError, match="generation setting: num_return must be an integer >= 1"):
            GenerationConfig(**bad)
    with pytest.raises(OwnGPTError, match="num_return 5 with num_beams 4: beam search keeps 4 beams, so at most 4 "
                                          "distinct results"):
        GenerationConfig(num_beams=4, num_return=5)
    assert GenerationConfig(num_beams=4, num_return=4).num_return == 4
    assert GenerationConfig(num_return=8).num_return == 8  # sampling: as many samples as asked


def test_temperatures_that_would_overflow_are_refused_and_the_smallest_allowed_works(tok, model):
    # logits / 1e-45 overflow to inf (NaN probabilities, a RuntimeError in torch.multinomial); inf flattens to NaN
    for bad in (math.inf, math.nan, 1e-45, 1e-5):
        with pytest.raises(OwnGPTError, match=r"temperature must be 0 \(greedy\) or a finite number >= 0.0001"):
            GenerationConfig(temperature=bad)
    prompt = tok.encode("the quick")
    coldest = generate_ids(model, [prompt], GenerationConfig(max_new_tokens=20, temperature=1e-4, seed=0))[0]
    assert coldest == generate_ids(model, [prompt], greedy(20))[0]
    largest_seed = GenerationConfig(max_new_tokens=5, seed=2**64 - 1)  # what torch.Generator.manual_seed takes
    assert len(generate_ids(model, [prompt], largest_seed)[0]) == 5
