"""The `owngpt chat` CLI: --message, stdin, --json, bad settings, MMI."""

from __future__ import annotations



from chat_fixtures import backward, invoke, json_lines, save_run, tiny_gpt, tok  # noqa: F401 - fixtures
from owngpt.chat import (
    ChatSession,
    chat_generation_config,
)
from owngpt.errors import OwnGPTError


def test_cli_chat_messages_end_to_end(tok, tmp_path):
    run_dir = save_run(tmp_path, tok, "chat", tiny_gpt(tok), {"chat": {"system_prompt": "You are Nova."}})
    session = ChatSession.from_checkpoint(str(run_dir), device="cpu")
    assert session.system == "You are Nova."  # recorded by sft, used by default

    args = ["chat", str(run_dir), "--message", "hi", "--message", "/reset", "--message", "how are you",
            "--seed", "0", "--max-new-tokens", "8", "--device", "cpu"]
    result = invoke(args + ["--json"])
    assert result.exit_code == 0, result.output
    turns = json_lines(result.output)
    assert [t["input"] for t in turns] == ["hi", "/reset", "how are you"]
    assert isinstance(turns[0]["reply"], str) and isinstance(turns[2]["reply"], str)
    assert turns[1]["reply"] is None and turns[1]["message"] == "conversation cleared"

    # same seed through the library gives the same replies
    session = ChatSession.from_checkpoint(str(run_dir), device="cpu", gen=chat_generation_config(max_new_tokens=8), seed=0)
    first = session.reply("hi")
    session.reset()
    assert [first, session.reply("how are you")] == [turns[0]["reply"], turns[2]["reply"]]

    plain = invoke(args)
    assert plain.exit_code == 0
    assert "conversation cleared" in plain.output

    bad = invoke(["chat", str(run_dir), "--message", "/nope", "--device", "cpu"])
    assert bad.exit_code == 1 and "unknown command" in bad.output


def test_cli_chat_reads_stdin_lines(tok, tmp_path):
    run_dir = save_run(tmp_path, tok, "chat", tiny_gpt(tok))
    result = invoke(["chat", str(run_dir), "--json", "--max-new-tokens", "6", "--device", "cpu"],
                    input="hi\n/temperature 0.5\nhow are you\n/quit\nnever read\n")
    assert result.exit_code == 0, result.output
    turns = json_lines(result.output)
    assert [t["input"] for t in turns] == ["hi", "/temperature 0.5", "how are you", "/quit"]
    assert turns[1]["message"] == "temperature = 0.5"


def test_cli_chat_reports_a_bad_setting_and_goes_on(tok, tmp_path):
    run_dir = save_run(tmp_path, tok, "chat", tiny_gpt(tok))
    result = invoke(["chat", str(run_dir), "--json", "--max-new-tokens", "6", "--device", "cpu"],
                    input="/temperature inf\nhi\n")
    assert result.exit_code == 1  # a line failed
    bad, turn = json_lines(result.output)
    assert bad["error"] and "temperature must be" in bad["message"]
    assert isinstance(turn["reply"], str) and not turn["error"]


def test_cli_chat_with_mmi(tok, tmp_path, backward):
    run_dir = save_run(tmp_path, tok, "chat", tiny_gpt(tok))
    back_dir = save_run(tmp_path, tok, "backward", backward, {"chat": {"reverse": True}})
    result = invoke(["chat", str(run_dir), "--mmi", "3", "--backward", str(back_dir), "--message", "do you like cats?",
                     "--seed", "0", "--max-new-tokens", "8", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (turn,) = json_lines(result.output)
    assert isinstance(turn["reply"], str) and not turn["error"]
    missing = invoke(["chat", str(run_dir), "--mmi", "3", "--message", "hi", "--device", "cpu"])
    assert isinstance(missing.exception, OwnGPTError) and "--backward" in str(missing.exception)


def test_cli_chat_moderation_option(tok, tmp_path):
    run_dir = save_run(tmp_path, tok, "chat", tiny_gpt(tok))
    ok = invoke(["chat", str(run_dir), "-m", "hi", "--moderation", "default", "--max-new-tokens", "4", "--device",
                 "cpu", "--json"])
    assert ok.exit_code == 0, ok.output
    bad = invoke(["chat", str(run_dir), "-m", "hi", "--moderation", str(tmp_path / "nope.yaml"), "--device", "cpu"])
    assert bad.exit_code != 0 and "does not exist" in str(bad.exception or bad.output)
