"""SFT data assembly: persona mixing, the identity share, validation size, reversed conversations for MMI."""

from __future__ import annotations

import json

import pytest

from owngpt.errors import OwnGPTError
from owngpt.train.sft import MAX_IDENTITY_VAL, MIN_IDENTITY, SFTConfig, build_conversations, identity_count


def conv(user: str, reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def chars(convs) -> int:
    return sum(len(m["content"]) for c in convs for m in c)


def test_identity_count_hits_the_share():
    data = [conv("x" * 90, "y" * 110)] * 5000  # 1,000,000 characters
    sample = [conv("a" * 10, "b" * 10)] * 10  # 20 characters each
    n = identity_count(data, sample, 0.2)
    assert n * 20 / (n * 20 + 1_000_000) == pytest.approx(0.2, abs=1e-3)
    assert identity_count(data[:10], sample, 0.2) == MIN_IDENTITY  # small data: the floor
    with pytest.raises(OwnGPTError, match="identity_share"):
        identity_count(data, sample, 1.0)


@pytest.fixture
def dialogues(tmp_path):
    path = tmp_path / "chats.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(400):
            f.write(json.dumps({"messages": conv(f"tell me about the number {i} please", f"{i} is a number I like a lot")}) + "\n")
    return str(path)


def test_persona_mixed_in_with_its_system_prompt(dialogues):
    train, val, report = build_conversations(SFTConfig(data=[dialogues], persona="example-en", identity_share=0.3))
    identity = report["persona"]["identity_conversations"]
    assert identity >= MIN_IDENTITY and len(train) + len(val) <= 400 + identity  # each conversation at most once
    trained = {json.dumps(c) for c in train}
    assert not any(json.dumps(c) in trained for c in val)  # identity templates repeat: held-out ones stay out
    assert "Nova" in report["system_prompt"]
    assert len(val) <= 400 * 0.2 + MAX_IDENTITY_VAL  # identity never swamps validation
    with_system = [c for c in train if c[0]["role"] == "system" and c[0]["content"] == report["system_prompt"]]
    assert with_system, "some conversations are trained with the persona's system prompt"
    fixed, _, fixed_report = build_conversations(SFTConfig(data=[dialogues], persona="example-en", identity_conversations=50))
    assert fixed_report["persona"]["identity_conversations"] == 50


def test_reverse_turns_every_conversation_around(dialogues):
    train, val, _ = build_conversations(SFTConfig(data=[dialogues], reverse=True))
    forward, _, _ = build_conversations(SFTConfig(data=[dialogues]))
    assert len(train) == len(forward)
    first = train[0]
    assert first[-1]["role"] == "assistant" and "please" in first[-1]["content"]  # the question is now the target


def test_raw_source_validation_is_held_out_not_repeated(dialogues):
    train, val, _ = build_conversations(SFTConfig(data=[dialogues], val_fraction=0.1))
    seen = {json.dumps(c) for c in train}
    assert val and not any(json.dumps(c) in seen for c in val)
    assert len(train) + len(val) == 400 and 10 <= len(val) <= 75


def test_base_changed_detects_new_base_weights(tmp_path):
    """The run's checkpoints record the base they were fine-tuned from (run_config.base_meta)."""
    import torch

    from owngpt.checkpoint.format import save_checkpoint
    from owngpt.checkpoint.meta import CheckpointMeta
    from owngpt.train.sft import base_changed

    run = tmp_path / "run"
    assert not base_changed(run, CheckpointMeta(sha256="a"))  # no run yet
    save_checkpoint(run, 1, {"w": torch.zeros(2)}, CheckpointMeta(run_config={"base_meta": {"sha256": "a"}}), None)
    assert not base_changed(run, CheckpointMeta(sha256="a")) and base_changed(run, CheckpointMeta(sha256="b"))


def test_without_a_held_out_split_one_conversation_is_moved_out_of_training(dialogues):
    train, val, _ = build_conversations(SFTConfig(data=[dialogues], val_fraction=0.0))
    assert len(val) == 1 and len(train) == 399 and val[0] not in train
