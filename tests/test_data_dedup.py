"""Tests for owngpt/data/dedup.py: exact and near-duplicate removal, English and Chinese, determinism."""

from __future__ import annotations

import random

import numpy as np

from owngpt.data.dedup import (
    ExactDedup,
    HashSet64,
    NearDedup,
    NearDedupConfig,
    estimated_jaccard,
    jaccard,
    lsh_params,
    text_key,
)

EN = ("The committee met on Tuesday to discuss the new library budget. After a long debate, members agreed to "
      "extend opening hours on weekends and to buy more books for children. The decision will be reviewed next "
      "spring, when the city publishes its annual report on public services and cultural programmes.")
ZH = ("今天上午，市图书馆召开会议讨论新的预算方案。经过长时间的讨论，委员们同意延长周末的开放时间，并为儿童购买更多的图书。"
      "这一决定将在明年春天重新评估，届时市政府将发布关于公共服务和文化项目的年度报告。")


def edit(text: str, n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    chars = list(text)
    for _ in range(n):
        chars[rng.randrange(len(chars))] = rng.choice("xyz的了")
    return "".join(chars)


def test_exact_dedup_normalises_case_and_spacing():
    d = ExactDedup()
    assert not d.seen("Hello  World\n")
    assert d.seen("hello world")
    assert not d.seen("hello world!")
    assert text_key("A b") == text_key("a  B")


def test_hashset_merges_and_still_finds_everything(monkeypatch):
    monkeypatch.setattr(HashSet64, "RECENT_MAX", 1000)  # many merges
    s = HashSet64()
    values = list(range(1, 100_000, 3))
    random.Random(0).shuffle(values)
    for i in range(0, len(values), 100):
        s.add(values[i : i + 100] + values[i : i + 3])  # repeats within and across batches are stored once
    s.add(values[:2000])
    assert len(s) == len(values) and len(s._recent) < 1000 and np.all(np.diff(s._sorted.astype(np.int64)) > 0)
    assert s.contains_any([values[5]]) and s.contains_any([values[-1]]) and not s.contains_any([2, 5])
    assert s.contains_matrix(np.array([[1, 2], [5, 8]], dtype=np.uint64)).tolist() == [True, False]


def test_near_duplicates_removed_different_texts_kept():
    for base, other in ((EN, ZH), (ZH, EN)):
        nd = NearDedup()
        # well above the 0.8 threshold: LSH is an S-curve, so pairs right at the threshold go either way
        assert jaccard(base, edit(base, 2)) >= 0.9
        assert nd.duplicates([base, edit(base, 2), other, base.upper()]) == [False, True, False, True]
        assert not nd.is_duplicate(ZH[:40] + EN[:40])  # a different text is kept


def test_short_unrelated_texts_are_not_near_duplicates():
    # short texts sharing a word or two must not collide (they get classic MinHash, not densified bins)
    texts = ["你是心理\n你疯了", "你是脑残\n你疯了。", "你生气了\n你生气吗", "你醉了\n不,我清醒。", "hi\nhello", "hi there\nhello!"]
    assert NearDedup().duplicates(texts) == [False] * len(texts)


def test_chinese_different_text_kept():
    nd = NearDedup()
    a = "我喜欢在周末去爬山，山顶的风景非常美丽，空气也很清新。"
    b = "这家餐厅的菜很好吃，服务员态度也不错，价格比较合理。"
    assert nd.duplicates([a, b]) == [False, False]


def test_minhash_estimate_tracks_jaccard():
    nd = NearDedup(NearDedupConfig(num_perm=256))
    for n in (0, 5, 20, 60):
        b = edit(EN * 2, n, seed=n)
        j = jaccard(EN * 2, b)
        assert abs(estimated_jaccard(nd.signature(EN * 2), nd.signature(b)) - j) < 0.12


def test_batched_equals_one_by_one_and_deterministic():
    texts = [edit(EN, i % 7, seed=i // 7) for i in range(40)] + [edit(ZH, i % 5, seed=i) for i in range(20)] + ["短", "ok"]
    a = NearDedup().duplicates(texts)
    one = NearDedup()
    assert [one.is_duplicate(t) for t in texts] == a
    assert NearDedup().duplicates(texts) == a  # same seed, same answers
    assert np.array_equal(NearDedup().signatures(texts[:5]), NearDedup().signatures(texts[:5]))


def test_lsh_params_move_with_threshold():
    b_lo, r_lo = lsh_params(0.5, 128)
    b_hi, r_hi = lsh_params(0.9, 128)
    assert b_lo * r_lo <= 128 and b_hi * r_hi <= 128
    assert (1 / b_lo) ** (1 / r_lo) < (1 / b_hi) ** (1 / r_hi)  # the S-curve's midpoint follows the threshold


def test_batched_answers_equal_one_by_one_across_merges(monkeypatch):
    """A merge of the recent keys must not happen inside a batch (it would hide keys added earlier in the batch)."""
    monkeypatch.setattr(HashSet64, "RECENT_MAX", 40)  # a merge every few documents
    rng = random.Random(1)
    base = [f"document {i}: " + " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "旅行", "天气"])
                                         for _ in range(30)) for i in range(40)]
    texts = [t if rng.random() < 0.5 else edit(rng.choice(base), 1) for t in base for _ in range(2)]
    one_by_one = NearDedup()
    expected = [one_by_one.is_duplicate(t) for t in texts]
    batched = NearDedup()
    got = [d for i in range(0, len(texts), 16) for d in batched.duplicates(texts[i : i + 16])]
    assert got == expected and any(expected) and not all(expected)


def test_a_huge_text_is_minhashed_in_pieces_with_the_same_signature(monkeypatch):
    """Texts over HUGE_CHARS are MinHashed alone in overlapping pieces (bounded memory); the signature must equal
    the one computed over the whole text at once, and texts beside it in the batch are unaffected."""
    import owngpt.data.dedup as dedup

    rng = random.Random(3)
    huge = "".join(rng.choice("abcdefgh 中文字") for _ in range(50_000))
    texts = [huge, "a short text", huge[:3000]]
    monkeypatch.setattr(dedup, "HUGE_CHARS", 7_000)
    pieces = NearDedup().signatures(texts)
    monkeypatch.setattr(dedup, "HUGE_CHARS", 10**9)
    assert (pieces == NearDedup().signatures(texts)).all()


def test_a_huge_text_is_normalised_and_keyed_in_pieces_with_the_same_result(monkeypatch):
    """normalise_for_dedup split a whole 20 MB line into word strings at once (~250 MB in a cleaning worker); over
    HUGE_CHARS it goes in pieces cut at whitespace, and the exact-dedup key hashes in pieces: same text, same key."""
    import owngpt.data.dedup as dedup
    from owngpt.data.dedup import normalise_for_dedup, text_key

    rng = random.Random(5)
    huge = "".join(rng.choice(["Ab", "ß", " ", "  ", "\n", "\u3000", "中文", "\ud800", "x" * 40]) for _ in range(20_000))
    for text in (huge, "  " + huge + "  ", "nospaceatall" * 1000, "   \n  "):
        monkeypatch.setattr(dedup, "HUGE_CHARS", 10**9)
        whole, key = normalise_for_dedup(text), text_key(text)
        monkeypatch.setattr(dedup, "HUGE_CHARS", 97)
        assert normalise_for_dedup(text) == whole and text_key(text) == key


def test_normalising_a_huge_text_needs_little_more_than_the_text():
    """A 7.5 MB line: ~11 bytes a character were held at once before (one string per word), ~2.5 now."""
    import tracemalloc

    from owngpt.data.dedup import normalise_for_dedup, text_key

    rng = random.Random(0)
    text = " ".join(rng.choice(["Alpha", "beta", "GAMMA", "delta", "x"]) for _ in range(1_500_000))
    tracemalloc.start()
    try:
        text_key(normalise_for_dedup(text), normalised=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(text), peak / len(text)
