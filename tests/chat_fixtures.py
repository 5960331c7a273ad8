"""Tiny chat models, sessions and CLI helpers shared by the chat tests."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from owngpt.chat import ChatSession, chat_generation_config, handle_line
from owngpt.config import ModelConfig
from owngpt.data.conversations import reverse_conversation
from owngpt.errors import OwnGPTError
from owngpt.model.gpt import GPT
from owngpt.tokenizer import render_conversation, train_char


TEXT = ("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,!?'\"-:;/<|>_()\n"
        "hi, how are you? i love cats. take an umbrella. do you like cats? is it raining?")


@pytest.fixture(scope="module")
def tok():
    return train_char([TEXT])


def tiny_gpt(tok, block: int = 96, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig(preset="gpt2", vocab_size=tok.vocab_size, block_size=block, n_layer=1, n_head=2, n_embd=32)
    return GPT(cfg).eval()


def session_of(tok, block: int = 96, **gen) -> ChatSession:
    cfg = chat_generation_config(**{"max_new_tokens": 12, "temperature": 1.0, "seed": 0, **gen})
    return ChatSession(tiny_gpt(tok, block), tok, cfg)


def prompt_len(tok, messages) -> int:
    return len(render_conversation(tok, messages, add_generation_prompt=True)[0])


def history(n_pairs: int) -> list[dict[str, str]]:
    out = []
    for i in range(n_pairs):
        out += [{"role": "user", "content": f"question number {i}?"}, {"role": "assistant", "content": f"answer {i}."}]
    return out + [{"role": "user", "content": "and the newest one?"}]


def run(session, line: str):
    result = handle_line(session, line)
    if result.stream is not None:
        result.reply = "".join(result.stream)  # consume, as the CLI does
    return result


def train_backward(tok, pairs: list[tuple[str, str]], steps: int = 150) -> GPT:
    """A tiny backward model trained on reverse_conversation(...) of (user, assistant) pairs."""
    model = tiny_gpt(tok, seed=1).train()
    rows = [render_conversation(tok, reverse_conversation([{"role": "user", "content": u},
                                                           {"role": "assistant", "content": a}])) for u, a in pairs]
    T = max(len(ids) for ids, _ in rows)
    x = torch.full((len(rows), T), tok.pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), -1, dtype=torch.long)
    for r, (ids, mask) in enumerate(rows):
        x[r, : len(ids)] = torch.tensor(ids)
        targets = [t if m else -1 for t, m in zip(ids[1:], mask[1:])]
        y[r, : len(targets)] = torch.tensor(targets)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(steps):
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


PAIRS = [("do you like cats?", "i love cats."), ("is it raining?", "take an umbrella.")]


@pytest.fixture(scope="module")
def backward(tok):
    return train_backward(tok, PAIRS)


def save_run(tmp_path, tok, name: str, model: GPT, run_config: dict | None = None):
    from owngpt.checkpoint.format import save_checkpoint
    from owngpt.checkpoint.meta import CheckpointMeta

    meta = CheckpointMeta(model_config=asdict(model.cfg), tokenizer_hash=tok.hash, run_config=run_config or {})
    save_checkpoint(tmp_path / name, 1, model.state_dict(), meta, None, tokenizer=tok, best=True)
    return tmp_path / name


def invoke(args: list[str], input: str | None = None):
    from typer.testing import CliRunner

    import owngpt.cli.chat  # noqa: F401 - registers `chat`
    from owngpt.cli import app

    result = CliRunner().invoke(app, args, input=input)
    if result.exception and not isinstance(result.exception, (SystemExit, OwnGPTError)):
        raise result.exception
    return result


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]
