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
    assert facts["messages"] == 14 and facts["emoji"] == ["😂"]
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
    assert load_persona(out).name == "小明" and "persona drafted from 4 of your messages" in result.output
    assert CliRunner().invoke(app, args).exit_code == 1  # exists: --force to overwrite
    assert CliRunner().invoke(app, args + ["--force"]).exit_code == 0
