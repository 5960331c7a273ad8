"""Tiny served models and a live server on 127.0.0.1, shared by the server tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import torch

from owngpt.chat.reply import ReplyModel
from owngpt.config import ModelConfig
from owngpt.model.gpt import GPT
from owngpt.serve.config import ServeConfig
from owngpt.serve.models import ServedModel
from owngpt.tokenizer import train_char

TEXT = ("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,!?'\"-:;/<|>_()*#=`[]{}\n"
        "你好叫什么名字我是小欧今天天气很好谢谢")
SYSTEM = "You are Bob."


def char_tokenizer():
    return train_char([TEXT])


def tiny_gpt(tok, block: int = 96, seed: int = 0) -> GPT:
    """Random weights, large enough to make varied text (a fresh init would repeat one token)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(preset="gpt2", vocab_size=tok.vocab_size, block_size=block, n_layer=1, n_head=2, n_embd=32)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.35)
    return model.eval()


class ScriptLM(torch.nn.Module):
    """Replies `script` (then <|endoftext|>) to any prompt of at least 2 tokens, optionally `delay` seconds per step:
    each row's progress lives in its cache, which follows the batch's joins and leaves like a real KVCache. A
    prefill is the first call on a new cache (a 1-token prompt has none, so its first step would be taken for one)."""

    class Cache:
        def __init__(self, rows: int, max_len: int) -> None:
            self.count, self.pos, self.max_len = [0] * rows, 0, max_len

        def reorder(self, index) -> None:
            self.count = [self.count[i] for i in index.tolist()]

        def append(self, other: "ScriptLM.Cache") -> None:
            self.count += other.count
            self.pos = max(self.pos, other.pos)

        def grow(self, max_len: int) -> None:
            self.max_len = max(self.max_len, max_len)

        def drop_front(self, n: int) -> None:
            self.pos -= n

    def __init__(self, tok, script: str, block: int = 256, delay: float = 0.0) -> None:
        super().__init__()
        self.script, self.eot, self.delay = tok.encode(script), tok.eot_id, delay
        self.cfg = ModelConfig(preset="gpt2", vocab_size=tok.vocab_size, block_size=block, n_layer=1, n_head=1, n_embd=8)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def new_cache(self, batch_size: int, max_len: int | None = None) -> "ScriptLM.Cache":
        return ScriptLM.Cache(batch_size, max_len or self.cfg.block_size)

    def forward(self, idx, cache=None, valid=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.cfg.vocab_size)
        if cache.pos > 0:  # a decode step (a prefill starts from an empty cache and is never sampled from)
            for b in range(B):
                k = cache.count[b]
                logits[b, -1, self.script[k] if k < len(self.script) else self.eot] = 30.0
                cache.count[b] += 1
            if self.delay:
                time.sleep(self.delay)
        cache.pos += T
        return logits


def served(tok, **scripts: str) -> dict[str, ServedModel]:
    """{"tiny": a random GPT with SYSTEM as its fine-tuned system prompt, name: ScriptLM(script) ...}."""
    models = {"tiny": ServedModel("tiny", ReplyModel(tiny_gpt(tok), tok, None, SYSTEM), "mem")}
    for name, script in scripts.items():
        models[name] = ServedModel(name, ReplyModel(ScriptLM(tok, script), tok, None, None), "mem")
    return models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app, port: int | None = None) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 in a thread; yields its base URL; shuts it down afterwards."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def config(**kw) -> ServeConfig:
    return ServeConfig(**kw)
