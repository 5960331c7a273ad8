"""Conversation checks, rendering and packing: what is rejected and why, windows at turn boundaries, best fit."""

import json

import pytest

from owngpt.data.conversations import (
    ConversationSet,
    check_conversation,
    load_conversations,
    pack_examples,
    render_windows,
    reverse_conversation,
)
from owngpt.tokenizer import render_conversation, train_char


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_check_accepts_and_trims_trailing_user():
    ok, why = check_conversation(msgs(("system", "s"), ("user", "hi"), ("assistant", "yo"), ("user", "bye")))
    assert why is None and [m["role"] for m in ok] == ["system", "user", "assistant"]


def test_check_rejects_each_bad_shape():
    cases = {
        "no assistant turn": msgs(("user", "hi")),
        "empty content": msgs(("user", "hi"), ("assistant", "  ")),
        "unknown role": msgs(("user", "hi"), ("bot", "x")),
        "broken alternation": msgs(("user", "a"), ("user", "b"), ("assistant", "c")),
        "system message may only come first": msgs(("user", "a"), ("system", "b"), ("assistant", "c")),
        "non-empty list": [],
    }
    for expected, m in cases.items():
        ok, why = check_conversation(m)
        assert ok is None and expected in why, (expected, why)


def test_load_prepared_folder_reports_file_line(tmp_path):
    d = tmp_path / "data" / "conversations"
    d.mkdir(parents=True)
    lines = [
        json.dumps({"messages": msgs(("user", "hi"), ("assistant", "hello"))}),
        "{not json",
        json.dumps({"messages": msgs(("user", "only a question"))}),
        json.dumps({"text": "no messages"}),
    ]
    (d / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d.parent / "manifest.json").write_text("{}")  # what makes the folder prepared (owngpt/data/corpus.py)
    cs = load_conversations([str(tmp_path / "data")])
    assert len(cs.conversations) == 1
    locs = [loc for loc, _ in cs.problems]
    assert locs == [f"{d / 'train.jsonl'}:2", f"{d / 'train.jsonl'}:3", f"{d / 'train.jsonl'}:4"]
    s = cs.summary()
    assert s["conversations"] == 1 and s["rejected"] == 3


def test_pack_examples_fits_rows_and_truncates():
    ex = [([1] * n, [0] + [1] * (n - 1)) for n in (7, 5, 3, 2, 12)]
    rows, truncated = pack_examples(ex, row_len=8)
    assert truncated == 1
    assert all(sum(len(i) for i, _ in row) <= 8 for row in rows)
    assert sum(len(row) for row in rows) == 5
    assert len(rows) == 4  # 8 | 7 | 5+3 | 2 -> best fit puts 2 with nothing else that fits... at most 4 rows


def test_conversation_set_counts_documents():
    cs = ConversationSet()
    cs.add(msgs(("user", "a"), ("assistant", "b")), "x:1")
    cs.documents_ignored += 2
    assert cs.summary()["documents_ignored"] == 2


def _char_tok():
    from owngpt.tokenizer import train_char

    return train_char(["abcdefghijklmnopqrstuvwxyz .?!"])


def test_render_windows_short_conversation_is_one_window():
    from owngpt.tokenizer import render_conversation

    tok = _char_tok()
    conv = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}]
    assert render_windows(tok, conv, 1000) == [render_conversation(tok, conv)]


def test_render_windows_keeps_the_question_before_the_system_prompt():
    """system + user + reply do not fit, user + reply do: the window is user + reply (no system), never a reply
    without the question it answers."""
    from owngpt.tokenizer import render_conversation

    tok = _char_tok()
    conv = [{"role": "system", "content": "you are a very helpful assistant."},
            {"role": "user", "content": "how are you?"},
            {"role": "assistant", "content": "fine thanks " * 6}]
    sizes = [len(render_conversation(tok, [m])[0]) for m in conv]
    limit = sizes[1] + sizes[2] + 2
    assert sum(sizes) > limit
    assert render_windows(tok, conv, limit) == [render_conversation(tok, conv[1:])]


def test_render_windows_split_long_conversation_at_turns():
    from owngpt.tokenizer import render_conversation

    tok = _char_tok()
    conv = [{"role": "system", "content": "be brief"}]
    for i in range(12):
        conv += [{"role": "user", "content": f"question number {i}?"},
                 {"role": "assistant", "content": f"answer number {i} is a longer reply."}]
    full_ids, full_mask = render_conversation(tok, conv)
    limit = 160
    windows = render_windows(tok, conv, limit)
    assert len(windows) > 1
    system_ids = render_conversation(tok, conv[:1])[0]
    user_head = render_conversation(tok, [{"role": "user", "content": "x"}])[0][:3]
    for ids, mask in windows:
        assert len(ids) <= limit
        assert ids[: len(system_ids)] == system_ids  # the system prompt opens every window
        assert ids[len(system_ids) : len(system_ids) + 3] == user_head  # ... followed by a user turn
    # Every assistant token is learned exactly once across the windows: none lost, none doubled.
    assert sum(sum(m) for _, m in windows) == sum(full_mask)


def test_pack_examples_best_fit_keeps_every_example_within_rows():
    import random

    rng = random.Random(0)
    examples = [([1] * n, [0] + [1] * (n - 1)) for n in (rng.randint(2, 60) for _ in range(2000))]
    rows, truncated = pack_examples(examples, 64)
    assert truncated == 0
    assert sorted(len(ex[0]) for row in rows for ex in row) == sorted(len(e[0]) for e in examples)
    assert all(sum(len(ex[0]) for ex in row) <= 64 for row in rows)
    total = sum(len(e[0]) for e in examples)
    assert len(rows) <= total / 64 * 1.05 + 1  # best-fit-decreasing wastes little space


def test_render_windows_leave_out_a_system_prompt_that_leaves_no_room():
    tok = _char_tok()
    conv = [{"role": "system", "content": "s" * 50}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "r" * 40}, {"role": "user", "content": "ok"},
            {"role": "assistant", "content": "fine"}]
    windows = render_windows(tok, conv, 80)
    assert all(len(ids) <= 80 for ids, _ in windows)
    assert sum(sum(m) for _, m in windows) == len("r" * 40) + len("fine") + 2  # both replies and their <|im_end|>


@pytest.fixture(scope="module")
def tok():
    return train_char(["abcdefghijklmnopqrstuvwxyz 0123456789 SU\n"])


def test_reverse_conversation_plays_the_dialogue_backwards_with_roles_swapped(tok):
    conv = [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]
    assert reverse_conversation(conv) == [
        {"role": "user", "content": "a2"}, {"role": "assistant", "content": "u2"},
        {"role": "user", "content": "a1"}, {"role": "assistant", "content": "u1"},
    ]
    # messages after the last reply are ignored; a leading assistant message has nothing to predict after it
    assert reverse_conversation(conv[1:] + [{"role": "user", "content": "u3"}]) == reverse_conversation(conv)
    assert reverse_conversation([{"role": "assistant", "content": "a0"}, *conv[1:3]]) == [
        {"role": "user", "content": "a1"}, {"role": "assistant", "content": "u1"}]
    # consecutive messages of one role are joined (in reversed order)
    assert reverse_conversation([{"role": "user", "content": "u1"}, {"role": "user", "content": "u2"},
                                 {"role": "assistant", "content": "a"}]) == [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "u2\nu1"}]
    for no_context in ([], [{"role": "user", "content": "u"}], [conv[0], {"role": "assistant", "content": "a"}]):
        assert reverse_conversation(no_context) is None
    # the loss mask covers exactly the original user turns
    ids, mask = render_conversation(tok, reverse_conversation(conv))
    scored = tok.decode([i for i, m in zip(ids, mask) if m and i != tok.im_end_id])
    assert "u2" in scored and "u1" in scored and "a1" not in scored and "a2" not in scored


def test_a_chat_export_without_me_is_an_error_not_an_ignored_document(tmp_path):
    from chat_exports import WHATSAPP_ANDROID
    from helpers import write
    from owngpt.errors import OwnGPTError

    path = write(tmp_path / "chat.txt", WHATSAPP_ANDROID)
    with pytest.raises(OwnGPTError, match=r"which speaker are you\? Give --me NAME.*speakers found: Sam \(7\)"):
        load_conversations([str(path)])  # sft / evaluate --data load conversations: never read it as a document
    assert len(load_conversations([f"{path}?me=Alex"]).conversations) == 2


def test_render_windows_in_the_chitchat_format_open_every_window_with_cls(tmp_path):
    """An imported GPT2-chitchat model: each window is a dialogue of its own, so each starts with [CLS]."""
    from owngpt.export.hf_tokenizer import import_tokenizer

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"你好吗我很谢"]) + "\n",
                                        encoding="utf-8")
    tok = import_tokenizer(tmp_path).tokenizer
    conv = msgs(*[("user" if i % 2 == 0 else "assistant", "你好吗" if i % 2 == 0 else "我很好") for i in range(8)])
    assert render_windows(tok, conv, 1000) == [render_conversation(tok, conv)]
    windows = render_windows(tok, conv, 10)
    cls, sep = tok.chat_format["start_id"], tok.chat_format["sep_id"]
    assert len(windows) > 1 and all(ids[0] == cls and ids.count(cls) == 1 and len(ids) <= 10 for ids, _ in windows)
    for ids, mask in windows:  # the mask covers exactly the replies and their [SEP]
        assert [i for i, m in zip(ids, mask) if m] == (tok.encode("我很好") + [sep]) * (sum(mask) // 4)
