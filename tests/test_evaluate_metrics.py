"""distinct-n, name recall and reply-prompt extraction on hand-made examples."""

import pytest

from owngpt.evaluate.chat_eval import reply_prompts
from owngpt.evaluate.metrics import distinct_n, name_recall


def test_distinct_n_counts_unique_ngrams_over_all_replies():
    replies = ["I like cats", "i like dogs"]
    # unigrams: i, like, cats, i, like, dogs -> 4 distinct of 6
    assert distinct_n(replies, 1) == pytest.approx(4 / 6)
    # bigrams: (i like), (like cats), (i like), (like dogs) -> 3 of 4
    assert distinct_n(replies, 2) == pytest.approx(3 / 4)


def test_distinct_n_uses_characters_for_chinese():
    assert distinct_n(["你好你好"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["你好你好"], 2) == pytest.approx(2 / 3)  # 你好, 好你, 你好


def test_distinct_n_empty_is_zero():
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["one"], 2) == 0.0


def test_name_recall_is_case_insensitive_fraction():
    assert name_recall(["I am Nova.", "my name is nova", "I'm a bot"], "Nova") == pytest.approx(2 / 3)
    assert name_recall(["我是小欧。", "你好"], "小欧") == 0.5
    assert name_recall([], "Nova") == 0.0


def test_reply_prompts_cut_before_first_reply_and_add_system():
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "see you"},
    ]
    prompts = reply_prompts([conv, conv], n=1, system="be nice")
    assert prompts == [[{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]]
    assert reply_prompts([[{"role": "assistant", "content": "x"}]], n=5) == []
