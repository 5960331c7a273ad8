"""Shared CLI options: one declaration, the same defaults everywhere; every verb module registers loudly."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from owngpt.cli import _register, app
from owngpt.cli.options import budget_overrides


def test_time_without_steps_lifts_the_step_budget():
    """`pretrain --time` and `sft --time` share one rule: without --steps the run is bounded by time alone."""
    assert budget_overrides(None, "5m") == ["train.max_time=5m", "train.max_steps=0"]
    assert budget_overrides(300, "5m") == ["train.max_time=5m", "train.max_steps=300"]
    assert budget_overrides(300, None) == ["train.max_steps=300"]
    assert budget_overrides(None, None, "none") == ["train.resume=none"]


def _option_default(verb: str, name: str):
    import typer.main

    _register()
    command = typer.main.get_command(app)
    params = {p.name: p for p in command.commands[verb].params}
    return params[name].default


@pytest.mark.parametrize("verb", ["pretrain", "sft"])
def test_resume_has_one_default_in_both_training_verbs(verb):
    """--resume leaves the config's train.resume (auto) alone unless given, in pretrain and sft alike."""
    assert _option_default(verb, "resume") is None


def test_chat_sampling_defaults_come_from_chat_defaults():
    from owngpt.chat.settings import CHAT_DEFAULTS
    from owngpt.evaluate.chat_eval import ChatEvalConfig
    from owngpt.generate.settings import GenerationConfig

    for name in ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens"):
        assert _option_default("chat", name) == getattr(CHAT_DEFAULTS, name)
        assert _option_default("generate", name) == getattr(GenerationConfig(), name)
        if name != "max_new_tokens":  # evaluation samples shorter replies with chat's settings
            assert getattr(ChatEvalConfig().generation, name) == getattr(CHAT_DEFAULTS, name)


def test_every_verb_is_registered():
    _register()
    result = CliRunner().invoke(app, ["--help"])
    for verb in ("prepare", "pretrain", "sft", "generate", "chat", "evaluate", "quickstart", "data", "tokenizer",
                 "lora"):
        assert verb in result.output


def test_a_broken_verb_module_fails_loudly(monkeypatch):
    """_register imports each verb module explicitly: a missing one is an ImportError, never a vanished verb."""
    import sys

    import owngpt.cli as cli

    monkeypatch.setitem(sys.modules, "owngpt.cli.lora", None)  # as if the file had been renamed away
    with pytest.raises(ImportError):
        cli._register()
