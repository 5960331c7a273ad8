"""distinct-n, name recall and reply-prompt extraction on hand-made examples; eval prompts and replies as chat's."""

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


def test_evaluate_chat_samples_the_asked_number_of_replies_from_few_conversations():
    from owngpt.evaluate.chat_eval import ChatEvalConfig, evaluate_chat

    model, tok = _tiny_chat_model()
    convs = [[{"role": "user", "content": f"question {c}"}, {"role": "assistant", "content": "an answer"}] for c in "abc"]
    result = evaluate_chat(model, tok, convs, ChatEvalConfig(samples=7, max_new_tokens=6, batch_size=4))
    assert result["conversations"] == 3 and result["replies"] == 7
    assert 0 <= result["distinct_1"] <= 1 and result["perplexity"] > 1


def test_eval_prompts_are_fitted_as_chat_fits_them_keeping_the_system_prompt(monkeypatch):
    from types import SimpleNamespace

    import owngpt.chat as chat
    from owngpt.chat import ChatSession, chat_generation_config
    from owngpt.evaluate.chat_eval import ChatEvalConfig, persona_recall
    from owngpt.tokenizer import render_conversation

    model, tok = _tiny_chat_model()  # a 96-token context: a reply may take 48, the prompt gets the other 48
    system = "You are Bob."
    prompts = []

    def spy(model, batch, cfg, **kwargs):
        prompts.extend(batch)
        assert cfg.max_new_tokens == 48 and set(kwargs["stop_ids"]) == {tok.im_start_id, tok.im_end_id, tok.eot_id}
        return [[] for _ in batch]

    monkeypatch.setattr(chat, "generate_ids", spy)
    result = persona_recall(model, tok, SimpleNamespace(name="Bob"), "en", n=3, system=system,
                            cfg=ChatEvalConfig(max_new_tokens=1000, batch_size=2))
    assert len(prompts) == result["questions"] == 3
    head = render_conversation(tok, [{"role": "system", "content": system}])[0]
    for (question, _), ids in zip(result["examples"], prompts):
        session = ChatSession(model, tok, chat_generation_config(max_new_tokens=1000), system=system,
                              messages=[{"role": "user", "content": question}])
        assert ids == render_conversation(tok, session.prompt_messages(), add_generation_prompt=True)[0]
        assert ids[: len(head)] == head and len(ids) <= 48  # the persona is seen, the question cut on its left


def test_eval_replies_end_where_chat_replies_end():
    from test_generate import ScriptedLM

    from owngpt.chat import ChatSession, chat_generation_config
    from owngpt.evaluate.chat_eval import ChatEvalConfig, sample_replies
    from owngpt.tokenizer import render_conversation

    _, tok = _tiny_chat_model()
    messages = [{"role": "user", "content": "hello"}]
    start = len(render_conversation(tok, messages, add_generation_prompt=True)[0])
    # the model answers, then starts the user's next turn itself (no <|im_end|> first)
    script = tok.encode("hi there") + [tok.im_start_id] + tok.encode("user\nwho are you") + [tok.im_end_id]
    model = ScriptedLM(script, start, tok.vocab_size)
    assert sample_replies(model, tok, [messages], ChatEvalConfig(temperature=0.0)) == ["hi there"]
    assert ChatSession(model, tok, chat_generation_config(temperature=0.0)).reply("hello") == "hi there"
