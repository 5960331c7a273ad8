"""Load on 127.0.0.1: 32 concurrent streaming clients for a fixed number of requests, a quarter of them hanging up
mid-stream. Every request that stays completes without an error, and no place in the batch is leaked."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from owngpt.chat.reply import ReplyModel  # noqa: E402
from owngpt.serve.app import create_app  # noqa: E402
from owngpt.serve.config import ServeConfig  # noqa: E402
from owngpt.serve.models import ServedModel  # noqa: E402
from serve_fixtures import ScriptLM, char_tokenizer, live_server, served  # noqa: E402

CLIENTS, ROUNDS = 32, 3


async def one(client, i: int, r: int) -> tuple[str, int]:
    """One streamed request: ("done", chars) or ("left", chunks read) for the clients that hang up."""
    leaves = i % 4 == 0
    stream = await client.chat.completions.create(
        model="slow" if leaves else "tiny", stream=True, max_tokens=24, seed=i * 10 + r,
        messages=[{"role": "user", "content": f"client {i} round {r}: hello?"}])
    chunks, text, finish = 0, "", None
    async with stream:
        async for chunk in stream:
            chunks += 1
            for ch in chunk.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
            if leaves and chunks == 3:
                return "left", chunks  # leaving the `async with` here closes the connection mid-reply
    assert finish in ("stop", "length")
    return "done", len(text)


async def load(url: str) -> list[tuple[str, int]]:
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60) as client:
        async def client_loop(i: int) -> list[tuple[str, int]]:
            return [await one(client, i, r) for r in range(ROUNDS)]

        results = await asyncio.gather(*(client_loop(i) for i in range(CLIENTS)))
    return [x for rounds in results for x in rounds]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_32_streaming_clients_complete_and_leave_no_slot_behind():
    tok = char_tokenizer()
    models = served(tok)
    slow = ScriptLM(tok, "and so on " * 30, delay=0.01)
    models["slow"] = ServedModel("slow", ReplyModel(slow, tok, None, None), "mem")
    app = create_app(models, ServeConfig(max_batch=32, queue_size=64))
    with live_server(app) as url:
        results = asyncio.run(load(url))
        assert len(results) == CLIENTS * ROUNDS
        left = [r for r in results if r[0] == "left"]
        assert len(left) == CLIENTS // 4 * ROUNDS and all(n > 0 for kind, n in results if kind == "done")
        deadline = time.monotonic() + 10
        while True:  # the hung-up replies leave the batch at the next step
            health = json.loads(get(url + "/health"))
            if health["running"] == 0 and health["queue_depth"] == 0:
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.05)
        metrics = get(url + "/metrics")
        cancelled = int(re.search(r"owngpt_cancelled_total (\d+)", metrics).group(1))
        assert cancelled == len(left)  # each was stopped on the server, none ran on to its end
        assert not re.search(r'status="5\d\d"', metrics)
