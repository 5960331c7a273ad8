"""Chat evaluation: prompts cut before the first reply, the asked number of samples, replies sampled as chat samples them."""


from owngpt.evaluate.chat_eval import reply_prompts
from test_evaluate_metrics import _tiny_chat_model


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


def test_evaluate_chat_samples_the_asked_number_of_replies_from_few_conversations():
    from owngpt.chat import chat_generation_config
    from owngpt.evaluate.chat_eval import ChatEvalConfig, evaluate_chat

    model, tok = _tiny_chat_model()
    convs = [[{"role": "user", "content": f"question {c}"}, {"role": "assistant", "content": "an answer"}] for c in "abc"]
    result = evaluate_chat(model, tok, convs, ChatEvalConfig(samples=7, generation=chat_generation_config(max_new_tokens=6), batch_size=4))
    assert result["conversations"] == 3 and result["replies"] == 7
    assert 0 <= result["distinct_1"] <= 1 and result["perplexity"] > 1


def test_eval_prompts_are_fitted_as_chat_fits_them_keeping_the_system_prompt(monkeypatch):
    from types import SimpleNamespace

    import owngpt.generate.engine as chat  # the engine behind the one reply path
    from owngpt.chat import ChatSession, chat_generation_config
    from owngpt.evaluate.chat_eval import ChatEvalConfig, persona_recall
    from owngpt.tokenizer import render_conversation

    model, tok = _tiny_chat_model()  # a 96-token context: a reply may take 48, the prompt gets the other 48
    system = "You are Bob."
    prompts = []

    def spy(model, tokenizer, batch, cfg, stop_ids, *args, **kwargs):
        prompts.extend(batch)
        assert cfg.max_new_tokens == 48 and set(stop_ids) == {tok.im_start_id, tok.im_end_id, tok.eot_id}
        return [SimpleNamespace(ids=[], text="") for _ in batch]

    monkeypatch.setattr(chat, "_run", spy)
    result = persona_recall(model, tok, SimpleNamespace(name="Bob"), "en", n=3, system=system,
                            cfg=ChatEvalConfig(generation=chat_generation_config(max_new_tokens=1000), batch_size=2))
    assert len(prompts) == result["questions"] == 3
    head = render_conversation(tok, [{"role": "system", "content": system}])[0]
    for (question, _), ids in zip(result["examples"], prompts):
        session = ChatSession(model, tok, chat_generation_config(max_new_tokens=1000), system=system,
                              messages=[{"role": "user", "content": question}])
        assert ids == render_conversation(tok, session.prompt_messages(), add_generation_prompt=True)[0]
        assert ids[: len(head)] == head and len(ids) <= 48  # the persona is seen, the question cut on its left


def test_eval_replies_end_where_chat_replies_end():
    from gen_fixtures import ScriptedLM

    from owngpt.chat import ChatSession, chat_generation_config
    from owngpt.evaluate.chat_eval import ChatEvalConfig, sample_replies
    from owngpt.tokenizer import render_conversation

    _, tok = _tiny_chat_model()
    messages = [{"role": "user", "content": "hello"}]
    start = len(render_conversation(tok, messages, add_generation_prompt=True)[0])
    # the model answers, then starts the user's next turn itself (no <|im_end|> first)
    script = tok.encode("hi there") + [tok.im_start_id] + tok.encode("user\nwho are you") + [tok.im_end_id]
    model = ScriptedLM(script, start, tok.vocab_size)
    assert sample_replies(model, tok, [messages], ChatEvalConfig(generation=chat_generation_config(max_new_tokens=48, temperature=0.0))) == ["hi there"]
    assert ChatSession(model, tok, chat_generation_config(temperature=0.0)).reply("hello") == "hi there"
