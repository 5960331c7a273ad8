"""Continuous batching (owngpt/generate/batch.py): groups that join and leave between steps get exactly what they
would get alone — greedy and seeded sampling, with and without the KV cache — and end for the right reason."""

from __future__ import annotations

import pytest

from gen_fixtures import greedy, model, random_gpt, tok  # noqa: F401 - fixtures
from owngpt.errors import OwnGPTError
from owngpt.generate import GenerationConfig, generate_ids, generate_texts
from owngpt.generate.batch import DecodeBatch
from owngpt.generate.moderation import ContentFilter

PROMPTS = ("a", "the lazy dog jumps", "hello", "fox. the quick brown", "0")


def run_staggered(m, tok, groups, joins, use_cache=True, capacity=None):
    """Add group i (prompts, cfg) before step joins[i]; step until every row has ended. Returns the groups, in the
    order of `groups`."""
    batch = DecodeBatch(m, tok, use_cache=use_cache, capacity=capacity)
    added, step = {}, 0
    while len(added) < len(groups) or len(batch):
        for i, (prompts, cfg) in enumerate(groups):
            if joins[i] == step:
                added[i] = batch.add(prompts, cfg, stop_ids=())
        batch.step()
        step += 1
    return [added[i] for i in range(len(groups))]


@pytest.mark.parametrize("preset,use_cache", [("gpt2", True), ("modern", True), ("gpt2", False)])
def test_groups_joining_mid_flight_get_what_they_get_alone(tok, preset, use_cache):
    m = random_gpt(tok.vocab_size, preset, seed=1, n_kv_head=1 if preset == "modern" else None)
    groups = [
        ([tok.encode(PROMPTS[0]), tok.encode(PROMPTS[1])], greedy(20)),
        ([tok.encode(PROMPTS[2])], GenerationConfig(max_new_tokens=25, temperature=1.0, top_k=8, seed=7)),
        ([tok.encode(PROMPTS[3])] * 3, GenerationConfig(max_new_tokens=12, temperature=0.9, seed=11)),  # n = 3
        ([tok.encode(PROMPTS[4])], greedy(30)),
    ]
    joins = [0, 3, 4, 17]  # the last joins after the first group has left
    got = run_staggered(m, tok, groups, joins, use_cache)
    for group, (prompts, cfg) in zip(got, groups):
        assert [row.ids for row in group.rows] == generate_ids(m, prompts, cfg, tokenizer=tok)
        assert [row.text for row in group.rows] == generate_texts(m, tok, prompts, cfg)
        assert all(row.end.reason == "length" and row.end.tokens == len(row.ids) for row in group.rows)


def test_a_seeded_group_is_the_same_whatever_shares_the_batch(tok, model):
    cfg = GenerationConfig(max_new_tokens=30, temperature=1.0, seed=5)
    prompt = tok.encode("the quick")
    alone = run_staggered(model, tok, [([prompt], cfg)], [0])[0].rows[0].ids
    busy = [([tok.encode(p)], GenerationConfig(max_new_tokens=40, temperature=1.0, seed=i)) for i, p in enumerate(PROMPTS)]
    crowded = run_staggered(model, tok, busy + [([prompt], cfg)], [0, 0, 1, 2, 5, 3])[-1].rows[0].ids
    assert crowded == alone


@pytest.mark.parametrize("preset", ["gpt2", "modern"])
def test_rows_that_fill_the_context_in_a_continuous_batch(tok, preset):
    """Rows joining at different times, each running until its sequence fills the context: the shared cache grows
    from a small capacity and drops the padding no row needs, so each row gets as many tokens as alone."""
    m = random_gpt(tok.vocab_size, preset, seed=2)  # context 64
    prompts = [tok.encode(t) for t in ("a", "the quick brown fox jumps over the lazy dog. hello", "hello world")]
    groups = [([p], greedy(80)) for p in prompts]
    got = run_staggered(m, tok, groups, [0, 9, 30], capacity=8)
    alone = [generate_ids(m, [p], greedy(80), tokenizer=tok)[0] for p in prompts]
    assert [g.rows[0].ids for g in got] == alone
    assert [len(a) for a in alone] == [64 - len(p) + 1 for p in prompts]


def test_ends_stop_id_stop_string_budget_and_cancel(tok, model):
    prompt = tok.encode("the quick")
    free = generate_ids(model, [prompt], greedy(30))[0]
    text = tok.decode(free)
    batch = DecodeBatch(model, tok)
    by_id = batch.add([prompt], greedy(30), stop_ids=[free[4]])
    by_string = batch.add([prompt], greedy(30, stop=[text[6:8]]))
    by_budget = batch.add([prompt], greedy(3))
    cancelled = batch.add([prompt], greedy(30))
    pieces = []
    for _ in range(2):
        pieces += batch.step()
    pieces += batch.cancel(cancelled)
    assert len(batch) == 3 and cancelled.done
    assert cancelled.rows[0].end.reason == "cancelled" and cancelled.rows[0].end.tokens == 2
    while len(batch):
        pieces += batch.step()
    assert by_id.rows[0].ids == free[: free.index(free[4])] and by_id.rows[0].end.reason == "stop"
    assert by_string.rows[0].text == text[: text.index(text[6:8])] and by_string.rows[0].end.reason == "stop"
    assert by_budget.rows[0].ids == free[:3] and by_budget.rows[0].end.reason == "length"
    # the pieces of each row join to its text, and each row ends exactly once
    for group in (by_id, by_string, by_budget, cancelled):
        row = group.rows[0]
        mine = [p for p in pieces if p.row is row]
        assert "".join(p.text for p in mine) == row.text
        assert sum(p.end is not None for p in mine) == 1 and mine[-1].end is row.end


def test_content_filter_ends_a_row_before_the_match_and_never_shows_it(tok, model):
    prompt = tok.encode("hello")
    text = generate_texts(model, tok, [prompt], greedy(40))[0]
    word = text[10:13]
    flt = ContentFilter(patterns=(__import__("re").escape(word),), hold=len(word))
    batch = DecodeBatch(model, tok)
    group = batch.add([prompt], greedy(40), content_filter=flt)
    shown = ""
    while len(batch):
        for piece in batch.step():
            shown += piece.text
            assert word not in shown
    row = group.rows[0]
    assert row.end.reason == "content_filter" and row.text == text[: text.index(word)] == shown
    assert generate_texts(model, tok, [prompt], greedy(40), content_filter=flt) == [row.text]


def test_a_bad_prompt_adds_nothing(tok, model):
    batch = DecodeBatch(model, tok)
    batch.add([tok.encode("hello")], greedy(5))
    with pytest.raises(OwnGPTError, match="empty"):
        batch.add([tok.encode("ok"), []], greedy(5))
    with pytest.raises(OwnGPTError, match="outside the vocabulary"):
        batch.add([[tok.vocab_size + 3]], greedy(5))
    assert len(batch) == 1
    while len(batch):
        batch.step()


def test_batch_steps_share_one_forward_pass(tok, model, monkeypatch):
    """Rows of several groups are decoded by one forward call per step, not one per request."""
    calls = []
    forward = model.forward

    def counting(idx, *args, **kwargs):
        calls.append(tuple(idx.shape))
        return forward(idx, *args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    batch = DecodeBatch(model, tok)
    for p in PROMPTS[:4]:
        batch.add([tok.encode(p)], greedy(6))
    calls.clear()
    batch.step()
    assert calls == [(4, 1)]
