"""Does it sound like me? Text statistics (owngpt/data/chats/style.py) and the comparison of sampled replies with
real ones (owngpt/evaluate/style.py)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from owngpt.data.chats.style import frequent_phrases, length_bucket, text_style
from owngpt.evaluate.style import ME, compare_style, cosine, char_ngrams, evaluate_style, js_divergence, reply_points
from owngpt.evaluate.style import style_config
from test_evaluate_metrics import _tiny_chat_model


def test_text_style_counts_each_feature():
    s = text_style(["haha ok!", "Where are you?", "on my way 😂😂", "好的[微笑]", "line one\nline two...", " "])
    assert s["messages"] == 5  # blank messages do not count
    assert s["chars_median"] == 12 and s["chars_mean"] == pytest.approx((8 + 14 + 12 + 6 + 20) / 5)
    assert s["emoji"] == pytest.approx(2 / 5) and s["emoji_per_message"] == pytest.approx(3 / 5)
    assert (s["question"], s["exclamation"], s["ellipsis"], s["laugh"]) == (0.2, 0.2, 0.2, 0.2)
    assert s["end_punct"] == pytest.approx(3 / 5)  # ! ? ...
    assert s["lower_start"] == pytest.approx(3 / 4)  # of the 4 starting with a Latin letter
    assert s["multi_line"] == 0.2 and sum(s["length_hist"]) == pytest.approx(1.0)
    assert [length_bucket(n) for n in (1, 3, 4, 127, 128, 5000)] == [0, 0, 1, 5, 6, 6]
    assert text_style([])["messages"] == 0


def test_frequent_phrases_prefer_whole_phrases():
    texts = ["sounds good to me", "ok sounds good", "sounds good!", "好的好的", "好的呀", "好的"]
    phrases = dict(frequent_phrases(texts, min_count=3))
    assert phrases["sounds good"] == 3 and phrases["好的"] == 3  # counted once per message
    assert "good" not in phrases and "sounds" not in phrases


def test_distances_are_zero_for_the_same_texts_and_grow_apart():
    mine = ["haha yes", "ok see you 😂", "lol no way", "sure thing"]
    formal = ["Dear colleague, thank you for your message.", "I shall reply in due course.",
              "Kind regards and best wishes.", "Please find the document attached."]
    result = compare_style({ME: mine, "me again": list(mine), "someone else": formal})
    rows = result["rows"]
    assert result["texts"] == 4 and rows[ME]["distance"] == pytest.approx(0.0, abs=1e-9)
    assert rows["me again"]["distance"] == pytest.approx(0.0, abs=1e-9) and rows[ME]["char3_cosine"] == pytest.approx(1)
    assert rows["someone else"]["distance"] > 0.3 and rows["someone else"]["length_js"] > 0.5
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0) and js_divergence([0.5, 0.5], [0.5, 0.5]) == 0
    assert cosine(char_ngrams(["abcd"]), char_ngrams(["xyz!"])) == 0


def test_reply_points_spread_over_conversations():
    def conv(tag, n):
        out = []
        for i in range(n):
            out += [{"role": "user", "content": f"{tag}q{i}"}, {"role": "assistant", "content": f"{tag}a{i}"}]
        return out

    points = reply_points([conv("x", 3), conv("y", 1), conv("z", 2)], n=5)
    assert [reply for _, reply in points] == ["xa0", "ya0", "za0", "xa1", "za1"]
    assert points[3][0][-1] == {"role": "user", "content": "xq1"} and len(points[3][0]) == 3


def test_evaluate_style_samples_every_model_at_the_same_points():
    model, tok = _tiny_chat_model()
    tiny = SimpleNamespace(model=model, tokenizer=tok, system=None)
    convs = [[{"role": "user", "content": f"how are you {c}?"}, {"role": "assistant", "content": "fine, thanks!"}]
             for c in "abcdef"]
    cfg = style_config(samples=4, seed=1)
    cfg.generation = replace(cfg.generation, max_new_tokens=8)
    result = evaluate_style({"clone": tiny, "base": tiny}, convs, cfg, others={"someone": ["hello there"] * 9})
    assert result["points"] == 4 and result["texts"] == 4 and list(result["rows"]) == [ME, "clone", "base", "someone"]
    assert result["rows"]["clone"] == result["rows"]["base"]  # same model, same seed: the same replies
    assert result["perplexity"]["clone"]["perplexity"] > 1 and result["examples"][0][ME] == "fine, thanks!"


def test_frequent_phrases_leave_out_stop_word_pairs_and_fragments_of_one_sentence():
    texts = ["sounds good to me"] * 5 + ["i am home", "i am here", "it is late", "it is ok", "i am ok", "it is what"]
    phrases = [p for p, _ in frequent_phrases(texts, min_count=3)]
    assert phrases == ["sounds good to me"]  # not "i am" / "it is", not "sounds good" beside "good to me"
    zh = ["好的好的明天见"] * 4 + ["我们的", "我们的", "我们的"]
    assert [p for p, _ in frequent_phrases(zh, min_count=3)] == ["好的好的明天见"]


def test_the_style_table_fits_80_columns():
    from owngpt.cli.reports import print_style
    from owngpt.console import console as make_console

    mine = ["haha yes", "ok see you 😂", "lol no way", "sure thing"]
    result = compare_style({ME: mine, "clone": mine[::-1], "base": ["Dear colleague, thank you."] * 4,
                            "another sender (real)": ["fine!", "what?", "ok", "nope"]})
    result["perplexity"] = {"clone": {"perplexity": 69.43}, "base": {"perplexity": 165.12}}
    con = make_console(width=80, record=True)
    print_style(result, console=con)
    text = con.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80, text
    assert "69.4" in text and "165.1" in text and "style distance" in text and "another sender (real)" in text
