"""The chat session: streamed turns, seeds, failed turns, save/load, regenerate, MMI, adapters."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from chat_fixtures import backward, run, save_run, session_of, tiny_gpt, tok  # noqa: F401 - fixtures
from owngpt.chat import (
    ChatSession,
    chat_generation_config,
    mmi_rerank,
    sample_conversation,
)
from owngpt.checkpoint.meta import CheckpointMeta
from owngpt.config import ModelConfig
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import GPT
from owngpt.tokenizer import render_conversation


def test_long_conversation_never_exceeds_the_context(tok):
    session = session_of(tok, block=64, max_new_tokens=16, temperature=0.0)
    session.system = "you are a tiny bot."
    for i in range(12):
        text = f"message {i} " + "blah " * (i * 7)  # some longer than the whole context
        session.reply(text)  # the model itself raises if the prompt + reply exceed its context
        assert session.messages[-1]["role"] == "assistant"
    assert len(session.messages) == 24  # trimming only affects what the model sees, not the history
    # the prompt of the next turn fits together with the reply budget
    session.messages.append({"role": "user", "content": "one more " * 40})
    ids = render_conversation(tok, session.prompt_messages(), add_generation_prompt=True)[0]
    assert len(ids) + session.max_new_tokens <= 64
    assert session.prompt_messages()[0] == {"role": "system", "content": "you are a tiny bot."}


def test_stream_reply_appends_what_was_streamed(tok):
    session = session_of(tok)
    pieces = list(session.stream_reply("hi, how are you?"))
    assert session.messages[0] == {"role": "user", "content": "hi, how are you?"}
    assert session.messages[1]["role"] == "assistant"
    assert session.messages[1]["content"] == "".join(pieces).strip()


def test_same_seed_same_replies_and_each_reply_draws_a_new_seed(tok):
    a, b = session_of(tok), session_of(tok)
    turns = ["hi", "how are you?"]
    assert sample_conversation(a, turns) == sample_conversation(b, turns)
    assert a.draws == 2


def test_failed_turn_leaves_history_unchanged(tok):
    session = session_of(tok, block=64)
    session.reply("hi")
    before = [dict(m) for m in session.messages]
    session.system = "s" * 200  # no room for any message
    with pytest.raises(OwnGPTError, match="system prompt"):
        session.reply("how are you?")
    assert session.messages == before


def test_regenerate_replaces_the_last_reply(tok):
    session = session_of(tok, max_new_tokens=24)
    assert run(session, "/regenerate").error  # nothing yet
    first = run(session, "hi, how are you?").reply
    user = dict(session.messages[0])
    again = run(session, "/regenerate")
    assert not again.error
    assert len(session.messages) == 2 and session.messages[0] == user
    assert session.messages[1]["content"] == again.reply.strip()
    assert again.reply != first  # a new seed for each generation


def test_save_refuses_a_folder_that_does_not_exist(tok, tmp_path):
    """/save writes into an existing folder only: a mistyped path is an error, never a new tree of folders."""
    session = session_of(tok)
    run(session, "hi")
    path = tmp_path / "no" / "such" / "c.json"
    result = run(session, f"/save {path}")
    assert result.error and result.message == (f"cannot save the chat to {path}: folder {path.parent} does not "
                                               "exist; create it first or save elsewhere")
    assert not (tmp_path / "no").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OwnGPTError, match="folder .*file is not a folder"):
        session.save(tmp_path / "file" / "c.json")
    saved = session.save(tmp_path / "c.json")  # an existing folder: written whole (owngpt.io), nothing left over
    assert json.loads(saved.read_text(encoding="utf-8"))["messages"] == session.messages
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "file"]


def test_save_then_load_round_trip(tok, tmp_path):
    session = session_of(tok)
    run(session, "/system be brief")
    run(session, "/temperature 0.5")
    run(session, "hi")
    run(session, "how are you?")
    path = tmp_path / "chats" / "c.json"
    path.parent.mkdir()
    assert "saved 4 messages" in run(session, f"/save {path}").message
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "owngpt-chat" and data["settings"]["temperature"] == 0.5

    other = session_of(tok)
    result = run(other, f"/load {path}")
    assert not result.error, result.message
    assert other.messages == session.messages and other.system == "be brief"
    assert other.gen.temperature == 0.5 and other.gen.top_k == session.gen.top_k
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "owngpt-chat", "messages": [{"role": "robot", "content": "x"}]}), encoding="utf-8")
    result = run(other, f"/load {bad}")
    assert result.error and "messages[0]" in result.message
    assert run(other, f"/load {tmp_path / 'missing.json'}").error
    assert other.messages == session.messages  # a failed load changes nothing


def test_session_with_mmi_keeps_the_best_of_n_candidates(tok, backward):
    session = ChatSession(tiny_gpt(tok), tok, chat_generation_config(max_new_tokens=10, temperature=1.0, seed=0),
                          mmi=3, backward=(backward, tok))
    reply = session.reply("do you like cats?")
    assert len(session.last_candidates) == 3
    texts, scores = zip(*session.last_candidates)
    assert reply == texts[max(range(3), key=lambda i: scores[i])]
    _, expected = mmi_rerank(backward, tok, [{"role": "user", "content": "do you like cats?"}], list(texts))
    assert list(scores) == expected
    with pytest.raises(OwnGPTError, match="backward"):
        ChatSession(tiny_gpt(tok), tok, mmi=3)
    session.gen = replace(session.gen, temperature=0.0)
    with pytest.raises(OwnGPTError, match="temperature"):
        session.reply("again")


def test_mmi_candidates_never_hold_ids_past_the_tokenizer(tok, monkeypatch):
    import owngpt.generate.engine as engine  # the engine behind both reply paths

    V = tok.vocab_size + 40  # an embedding padded past the tokenizer's vocabulary
    torch.manual_seed(0)
    model = GPT(ModelConfig(preset="gpt2", vocab_size=V, block_size=96, n_layer=1, n_head=2, n_embd=32)).eval()
    head = torch.nn.Linear(32, V)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[[tok.vocab_size + 5, tok.pad_id]] = 20.0  # unmasked, these two would be sampled nearly always
    model.lm_head = head
    outs = []

    def spy(*args, **kwargs):
        rows = engine_run(*args, **kwargs)
        outs.extend(row.ids for row in rows)
        return rows

    engine_run = engine._run
    monkeypatch.setattr(engine, "_run", spy)
    session = ChatSession(model, tok, chat_generation_config(max_new_tokens=10, temperature=1.0, top_k=0, top_p=1.0,
                                                             seed=0), mmi=3, backward=(tiny_gpt(tok, seed=3), tok))
    session.reply("hi")
    assert len(outs) == 3 and all(len(out) == 10 for out in outs)
    never = {tok.pad_id, *range(tok.vocab_size, V)}
    assert not never & {t for out in outs for t in out}


def test_chat_with_a_lora_adapter_uses_its_runs_system_prompt(tok, tmp_path):
    from owngpt.checkpoint.adapter import save_adapter
    from owngpt.checkpoint.format import read_meta, save_checkpoint
    from owngpt.model.lora import LoRAConfig, apply_lora

    base = tiny_gpt(tok)
    base_dir = save_run(tmp_path, tok, "base", base)
    tuned = tiny_gpt(tok)
    lcfg = LoRAConfig(rank=2, alpha=4.0, dropout=0.0, targets=["c_attn"])
    apply_lora(tuned, lcfg)
    torch.manual_seed(5)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-trivial adapter
    # an `owngpt sft --lora` run: adapter-only checkpoints with the chat defaults, and RUN/adapter
    run = tmp_path / "sft-lora"
    lora_state = {k: v for k, v in tuned.state_dict().items() if "lora_" in k}
    meta = CheckpointMeta(model_config=asdict(tuned.cfg), tokenizer_hash=tok.hash, weights_filtered=True,
                          run_config={"chat": {"system_prompt": "You are Lora."}})
    save_checkpoint(run, 1, lora_state, meta, None, tokenizer=tok, best=True)
    save_adapter(run / "adapter", tuned, lcfg, read_meta(base_dir / "best"))

    session = ChatSession.from_checkpoint(str(base_dir), adapter=str(run / "adapter"), device="cpu")
    assert session.system == "You are Lora."
    x = torch.tensor([tok.encode("hi there")])
    with torch.no_grad():
        torch.testing.assert_close(session.model(x), tuned.eval()(x))


def test_the_content_filter_cuts_a_chat_reply_and_says_so(tok):
    from serve_fixtures import ScriptLM

    from owngpt.generate.moderation import ContentFilter

    model = ScriptLM(tok, "sure, take an umbrella, darn it")
    session = ChatSession(model, tok, chat_generation_config(temperature=0.0, max_new_tokens=60),
                          content_filter=ContentFilter(words=("darn",)))
    shown = "".join(session.stream_reply("is it raining?"))
    assert shown == session.messages[-1]["content"] == "sure, take an umbrella," and session.filtered
    free = ChatSession(model, tok, chat_generation_config(temperature=0.0, max_new_tokens=60))
    assert free.reply("is it raining?") == "sure, take an umbrella, darn it" and not free.filtered
