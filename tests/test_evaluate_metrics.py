"""distinct-n, name recall and assistant-token perplexity on hand-made examples."""

import pytest

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


def _tiny_chat_model():
    import torch

    from owngpt.config import ModelConfig
    from owngpt.model.gpt import GPT
    from owngpt.tokenizer import train_char

    tok = train_char(["abcdefghijklmnopqrstuvwxyz ,.?!"])
    torch.manual_seed(0)
    model = GPT(ModelConfig(preset="modern", vocab_size=tok.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16)).eval()
    return model, tok


def test_chat_perplexity_is_the_masked_cross_entropy():
    import math

    import torch
    import torch.nn.functional as F

    from owngpt.evaluate.metrics import chat_perplexity
    from owngpt.tokenizer import render_conversation

    model, tok = _tiny_chat_model()
    conv = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello you"}]
    ids, mask = render_conversation(tok, conv)
    with torch.no_grad():
        logits = model(torch.tensor(ids[:-1])[None])[0]
    losses = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    keep = torch.tensor(mask[1:], dtype=torch.bool)
    expected = float(losses[keep].mean())
    got = chat_perplexity(model, tok, [conv])
    assert got["tokens"] == int(keep.sum()) == len(tok.encode("hello you")) + 1  # the reply and its <|im_end|>
    assert got["loss"] == pytest.approx(expected, rel=1e-5) and got["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
