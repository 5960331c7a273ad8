"""`owngpt persona suggest` (owngpt/persona/suggest.py): a persona file drafted from my messages loads as a persona,
names me, picks my languages and style, and quotes no personal data."""

from __future__ import annotations

import pytest

from chat_exports import PHONE, QQ_EXPORT, WHATSAPP_ANDROID, wechat_csv
from helpers import write
from owngpt.data.chats.model import ChatOptions
from owngpt.errors import OwnGPTError
from owngpt.persona import load_persona, system_prompt
from owngpt.persona.suggest import my_messages, suggest_persona


def test_an_english_export_gives_an_english_persona_that_loads(tmp_path):
    chat = "\n".join(f"1/{d}/24, 9:0{i} PM - {'Sam' if i % 2 else 'Alex'}: "
                     f"{'so what now?' if i % 2 else 'haha sounds good 😂 see you there'}"
                     for d in range(1, 8) for i in range(4)) + "\n"
    path = write(tmp_path / "chat.txt", chat)
    text, facts = suggest_persona([str(path)], ChatOptions(me=("Alex",)))
    persona = load_persona(write(tmp_path / "me.yaml", text))
    assert persona.name == "Alex" and persona.languages == ["en"] and persona.facts == []
    assert persona.style == "playful"  # an emoji in every message, laughing in every message
    assert facts["messages"] == 7 and facts["emoji"] == ["😂"]  # my replies: each session opens with one of mine
    assert "sounds good" in " ".join(facts["phrases"]) and "😂" in persona.instructions
    assert "Alex" in system_prompt(persona)


def test_chinese_and_mixed_exports_and_a_prepared_folder(tmp_path):
    qq = write(tmp_path / "qq.txt", QQ_EXPORT)
    text, facts = suggest_persona([str(qq)], ChatOptions(me=("987654321",)), name="小明")
    persona = load_persona(write(tmp_path / "p.yaml", text))
    assert persona.name == "小明" and persona.languages == ["zh"] and persona.style == "playful"  # 哈哈 in 1 of 3
    assert persona.text("instructions", "zh").startswith("像小明平时发消息那样说话")
    # a prepared folder: my turns are its assistant turns
    from owngpt.data.prepare import PrepareConfig, prepare

    mixed = [str(write(tmp_path / "a.txt", WHATSAPP_ANDROID)), str(write(tmp_path / "w.csv", wechat_csv()))]
    prepare(mixed, tmp_path / "data", PrepareConfig(chats=ChatOptions(me=("Alex",)), tokenizer_kind="char"),
            progress=False)
    assert "it's <PHONE>" in my_messages([str(tmp_path / "data")], ChatOptions())
    text, _ = suggest_persona(mixed, ChatOptions(me=("Alex",)))
    persona = load_persona(write(tmp_path / "m.yaml", text))
    assert persona.languages == ["en", "zh"] and set(persona.instructions) == {"en", "zh"}
    assert PHONE not in text


def test_suggest_needs_a_name_and_the_cli_writes_the_file(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    wx = write(tmp_path / "w.csv", wechat_csv())
    with pytest.raises(OwnGPTError, match="needs a name"):
        suggest_persona([str(wx)], ChatOptions())  # WeChat knows who I am, but not my name
    _register()
    out = tmp_path / "me.yaml"
    args = ["persona", "suggest", str(wx), "--name", "小明", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_persona(out).name == "小明" and "persona drafted from 3 of your messages" in result.output
    assert CliRunner().invoke(app, args).exit_code == 1  # exists: --force to overwrite
    assert CliRunner().invoke(app, args + ["--force"]).exit_code == 0


def test_personal_data_and_blocked_words_never_reach_the_persona(tmp_path):
    from owngpt.data.chats.model import with_block_list
    from owngpt.data.wordlist import ContentFilter

    lines = []
    for d in range(1, 8):
        lines += [f"1/{d}/24, 9:00 PM - Bo: where do I write?", f"1/{d}/24, 9:01 PM - Alice: jane.doe@gmail.com",
                  f"1/{d}/24, 9:02 PM - Bo: and then?", f"1/{d}/24, 9:03 PM - Alice: project falcon launch soon"]
    path = write(tmp_path / "chat.txt", "\n".join(lines) + "\n")
    text, facts = suggest_persona([str(path)], ChatOptions(me=("Alice",)))
    assert "jane" not in text and "gmail" not in text and "doe" not in text
    assert "project falcon" in text  # a phrase of mine, as it is
    blocked = with_block_list(ChatOptions(me=("Alice",)), ContentFilter(words=("falcon",)))
    text, facts = suggest_persona([str(path)], blocked)
    assert "falcon" not in text and facts["messages"] == 7  # the blocked messages are not mine to describe


def test_the_cli_takes_a_block_list(tmp_path):
    from typer.testing import CliRunner

    from owngpt.cli import _register, app

    chat = "\n".join(f"1/{d}/24, 9:0{i} PM - {'Bo' if i % 2 else 'Al'}: {'ok?' if i % 2 else 'secret plan ahead'}"
                     for d in range(1, 8) for i in range(4)) + "\n"
    path = write(tmp_path / "chat.txt", chat)
    block = write(tmp_path / "block.yaml", "words: [secret]\n")
    _register()
    result = CliRunner().invoke(app, ["persona", "suggest", str(path), "--me", "Al", "--block", str(block)])
    assert result.exit_code == 1 and "no messages of yours" in str(result.exception)  # every one was blocked
    result = CliRunner().invoke(app, ["persona", "suggest", str(path), "--me", "Al"])
    assert result.exit_code == 0 and "secret plan" in result.output


def test_a_prepared_folder_gives_its_train_split_only(tmp_path):
    from owngpt.data.corpus import read_split
    from owngpt.data.prepare import PrepareConfig, prepare

    chat = "\n".join(f"1/{d}/24, 9:0{i} PM - {'Bo' if i % 2 == 0 else 'Al'}: message {d}.{i}"
                     for d in range(1, 29) for i in range(2)) + "\n"
    prepare([str(write(tmp_path / "chat.txt", chat))], tmp_path / "data",
            PrepareConfig(chats=ChatOptions(me=("Al",)), tokenizer_kind="char", split=(0.5, 0.25, 0.25)),
            progress=False)
    held = {m["content"] for split in ("val", "test") for line in read_split(tmp_path / "data", "conversations", split)
            for m in line.record["messages"] if m["role"] == "assistant"}
    mine = my_messages([str(tmp_path / "data")], ChatOptions())
    assert held and mine and not held & set(mine)


@pytest.mark.parametrize("me", [PHONE, "jane.doe@gmail.com", "987654321", "wxid_abc123", "user12345"])
def test_a_name_from_me_that_is_personal_data_or_an_id_is_left_for_me_to_write(tmp_path, me):
    chat = "".join(f"1/{d}/24, 9:00 PM - Bo: hi {d}?\n1/{d}/24, 9:01 PM - {me}: hello there friend\n"
                   for d in range(1, 29))
    path = write(tmp_path / "chat.txt", chat)
    text, _ = suggest_persona([str(path)], ChatOptions(me=(me,)))
    assert me not in text and "555" not in text and "jane" not in text
    assert 'name: ""' in text and "--me was an id or held personal data" in text
    assert "Write the way you text" in text
    with pytest.raises(OwnGPTError, match="'name' is required"):
        load_persona(write(tmp_path / "p.yaml", text))  # until I write it
    text, _ = suggest_persona([str(path)], ChatOptions(me=(me,)), name="Jo")  # --name is taken as given
    assert load_persona(write(tmp_path / "q.yaml", text)).name == "Jo"


def test_raw_exports_give_only_the_sessions_prepare_puts_in_train(tmp_path):
    from owngpt.data.corpus import read_split
    from owngpt.data.prepare import PrepareConfig, prepare

    chat = "".join(f"1/{1 + d % 28}/{24 + d // 28}, 9:00 PM - Bo: question {d}\n"
                   f"1/{1 + d % 28}/{24 + d // 28}, 9:01 PM - Al: answer number {d}\n" for d in range(80))
    path = write(tmp_path / "chat.txt", chat)
    prepare([str(path)], tmp_path / "data", PrepareConfig(chats=ChatOptions(me=("Al",)), tokenizer_kind="char"),
            progress=False)  # the default split, as `owngpt clone` prepares

    def mine(split):
        return {m["content"] for line in read_split(tmp_path / "data", "conversations", split)
                for m in line.record["messages"] if m["role"] == "assistant"}

    held = mine("val") | mine("test")
    got = my_messages([str(path)], ChatOptions(me=("Al",)))
    assert held and not held & set(got)
    assert set(got) == mine("train")
