"""owngpt/lang.py: the one definition of a Han character, and zh/en from it."""

from __future__ import annotations

from owngpt.lang import HAN, count_han, has_han, is_han, language


def test_han_ranges_edges_and_neighbours():
    for lo, hi in HAN:
        assert is_han(chr(lo)) and is_han(chr(hi))
        assert count_han(chr(lo) + chr(hi)) == 2 and has_han(chr(hi))
    not_han = ("a", "，", "。", "ー", "あ", "한", "\u4dc0", "\u33ff", "\ufb00", "😀", "\U00020000")
    for ch in not_han:
        assert not is_han(ch) and not has_han(ch), hex(ord(ch))
    assert [is_han(c) for c in "中文ok㐀豈"] == [True, True, False, False, True, True]


def test_count_has_and_language():
    assert count_han("AI模型 and 中文，ok") == 4 and has_han("x中") and not has_han("plain text")
    assert count_han("".join(chr(c) for lo, hi in HAN for c in range(lo, hi + 1))) == sum(hi - lo + 1 for lo, hi in HAN)
    assert language("你好世界 ok") == "zh" and language("hello 你") == "en" and language("123 !") is None
