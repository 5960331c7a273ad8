"""History fitting: what fits is kept, the oldest pairs go first, the system prompt stays, a long message is cut."""

from __future__ import annotations


import pytest

from chat_fixtures import history, prompt_len, tok  # noqa: F401 - fixtures
from owngpt.chat import (
    fit_history,
)
from owngpt.errors import OwnGPTError


def test_fit_history_keeps_everything_that_fits(tok):
    msgs = history(2)
    assert fit_history(tok, "be nice", msgs, 10_000) == [{"role": "system", "content": "be nice"}, *msgs]
    assert fit_history(tok, None, msgs, 10_000) == msgs


def test_fit_history_drops_oldest_pairs_first_and_keeps_the_system_prompt(tok):
    msgs = history(20)
    budget = 150
    kept = fit_history(tok, "you are a bot", msgs, budget)
    assert kept[0] == {"role": "system", "content": "you are a bot"}
    assert kept[-1] == msgs[-1]
    turns = kept[1:]
    assert turns == msgs[len(msgs) - len(turns):]  # a suffix: only the oldest went
    assert turns[0]["role"] == "user"  # whole pairs: a kept turn starts with the user's message
    assert 1 < len(turns) < len(msgs)
    assert prompt_len(tok, kept) <= budget
    # as much as fits: one more pair would not
    more = [kept[0], *msgs[len(msgs) - len(turns) - 2:]]
    assert prompt_len(tok, more) > budget


def test_fit_history_cuts_an_extremely_long_message_on_the_left(tok):
    long = "x" * 5000 + " the end?"
    msgs = [*history(3)[:-1], {"role": "user", "content": long}]
    budget = 80
    kept = fit_history(tok, "sys", msgs, budget)
    assert [m["role"] for m in kept] == ["system", "user"]
    assert kept[0]["content"] == "sys"
    content = kept[1]["content"]
    assert long.endswith(content) and content.endswith("the end?")
    assert prompt_len(tok, kept) <= budget
    one_more = [kept[0], {"role": "user", "content": long[-(len(content) + 1):]}]
    assert prompt_len(tok, one_more) > budget  # the most that fits


def test_fit_history_refuses_a_system_prompt_that_leaves_no_room(tok):
    with pytest.raises(OwnGPTError, match="system prompt"):
        fit_history(tok, "s" * 500, [{"role": "user", "content": "hi"}], 64)
