"""The tokenizers the tokenizer tests share: a small mixed Chinese/English corpus, one BPE and one char tokenizer."""

from __future__ import annotations

import random

import pytest

from owngpt.tokenizer import Tokenizer, train_bpe, train_char

ZH = ["今天天气很好，我们去公园散步吧。", "人工智能正在改变世界，大家都在学习机器学习。", "我喜欢吃苹果和香蕉，你呢？",
      "这本书非常有意思，推荐给你。", "北京是中国的首都，上海是最大的城市。"]
EN = ["The quick brown fox jumps over the lazy dog.", "I like to read books about machine learning.",
      "How are you doing today? I'm fine, thanks!", "Don't worry, we'll figure it out together.",
      "She sells sea shells by the sea shore."]


def corpus(n: int = 300) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(ZH + EN) for _ in range(3)) for _ in range(n)]


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return train_bpe(corpus(), 600)


@pytest.fixture(scope="module")
def char() -> Tokenizer:
    return train_char(corpus())
