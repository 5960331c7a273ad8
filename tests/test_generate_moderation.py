"""The content filter: lists from YAML (mistakes named), whole-word Latin matching, Chinese anywhere, and a stream
that never shows filtered text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from owngpt.errors import OwnGPTError
from owngpt.generate.moderation import ContentFilter, load_content_filter
from owngpt.generate.text import TextTracker
from owngpt.tokenizer import train_char


def test_default_list_loads_and_matches_both_languages():
    flt = load_content_filter("default")
    assert flt.source == "default" and flt.hold >= max(len(w) for w in flt.words) + 1
    assert flt.find("well, SHIT happens") == 6
    assert flt.find("你这个傻逼") == 3
    assert flt.find("他说：去死吧！") == 3
    assert flt.find("a fuuuuck moment") == 2  # the pattern for drawn-out spellings
    assert flt.find("a shiitake mushroom, a bullshift, Scunthorpe") is None  # whole words only for Latin text


def test_words_match_whole_words_case_insensitively_and_chinese_anywhere():
    flt = ContentFilter(words=("ass", "笨蛋"))
    assert flt.find("a class act") is None and flt.find("what an ASS.") == 8 and flt.find("ass") == 0
    assert flt.find("你是笨蛋吗") == 2 and flt.find("ass你好") == 0  # a Han character is not a Latin letter
    assert flt.find("an ass", final=False) is None  # may still become "asset": not yet
    assert flt.find("an ass", final=True) == 3


def test_filter_files_are_checked_naming_the_file_and_key(tmp_path):
    good = tmp_path / "f.yaml"
    good.write_text("words: [darn]\npatterns: ['\\d{3}-\\d{4}']\nhold: 12\n", encoding="utf-8")
    flt = load_content_filter(good)
    assert flt.find("call 555-1234 now") == 5 and flt.hold == 12
    cases = {"wrods: [x]\n": "did you mean 'words'", "words: darn\n": "'words' must be a list",
             "patterns: ['(']\n": "patterns\\[0\\]", "hold: -1\nwords: [x]\n": "'hold' must be",
             "{}\n": "no words and no patterns", "- a\n": "expected a mapping"}
    for text, message in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(OwnGPTError, match=message) as e:
            load_content_filter(bad)
        assert str(bad) in str(e.value)
    with pytest.raises(OwnGPTError, match="does not exist"):
        load_content_filter(tmp_path / "missing.yaml")


TOK = train_char(["abcdefghijklmnopqrstuvwxyz .,!?ABC笨蛋你好"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("ab .!?Bc") + ["笨", "蛋", "你", "bad", "word"]), max_size=40))
def test_a_stream_never_shows_filtered_text_and_joins_to_the_result(parts):
    """Fed a token at a time, the text shown (up to safe_end) never reaches into the first match of the whole text,
    and once finished the result is the text cut before that match. (A prefix alone is no judge: "cab" may be a
    listed word at the end of a prefix and part of "cabin" in the text.)"""
    flt = ContentFilter(words=("bad word", "笨蛋", "cab"))
    text = "".join(parts)
    cut = flt.find(text)
    tracker = TextTracker(TOK, [], flt)
    shown = 0
    for t in TOK.encode(text):
        tracker.feed(t)
        shown = max(shown, tracker.safe_end())
        assert shown <= (len(text) if cut is None else cut)
        if tracker.stopped:
            break
    tracker.finish()
    result = tracker.result()
    assert result == (text if cut is None else text[:cut])
    assert shown <= len(result) and (tracker.reason == "content_filter") == (cut is not None)
