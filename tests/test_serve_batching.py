"""The decode thread: requests share steps, a reply past its time limit ends with "length", a quiet stream gets SSE
keep-alive comments, and a failing step answers 500 without killing the thread."""

from __future__ import annotations

import json
import threading

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from owngpt.chat.reply import ReplyModel  # noqa: E402
from owngpt.serve.app import create_app  # noqa: E402
from owngpt.serve.config import ServeConfig  # noqa: E402
from owngpt.serve.models import ServedModel  # noqa: E402
from serve_fixtures import ScriptLM, char_tokenizer, served  # noqa: E402

USER = [{"role": "user", "content": "hi, how are you?"}]


def with_slow(tok, delay: float, script: str = "word " * 30) -> dict:
    models = served(tok)
    models["slow"] = ServedModel("slow", ReplyModel(ScriptLM(tok, script, delay=delay), tok, None, None), "mem")
    return models


def test_a_reply_past_its_time_limit_ends_with_length():
    tok = char_tokenizer()
    with TestClient(create_app(with_slow(tok, 0.05), ServeConfig(request_timeout_s=0.3))) as c:
        r = c.post("/v1/chat/completions", json={"model": "slow", "messages": USER, "temperature": 0}).json()
        choice = r["choices"][0]
        assert choice["finish_reason"] == "length" and 0 < len(choice["message"]["content"]) < len("word " * 30)
        assert c.get("/health").json()["running"] == 0


def test_a_quiet_stream_gets_keep_alive_comments():
    tok = char_tokenizer()
    with TestClient(create_app(with_slow(tok, 0.15, "ab"), ServeConfig(keep_alive_s=0.05))) as c:
        body = {"model": "slow", "messages": USER, "temperature": 0, "stream": True}
        text = c.post("/v1/chat/completions", json=body).text
        assert ": keep-alive\n\n" in text and text.endswith("data: [DONE]\n\n")


def test_concurrent_requests_share_decode_steps(monkeypatch):
    """Requests arriving together are decoded in the same forward passes (rows > 1 per step)."""
    tok = char_tokenizer()
    models = with_slow(tok, 0.02, "x" * 40)
    model = models["slow"].reply.model
    widths = []
    forward = model.forward

    def spy(idx, cache=None, valid=None):
        if idx.size(1) == 1:
            widths.append(idx.size(0))
        return forward(idx, cache=cache, valid=valid)

    monkeypatch.setattr(model, "forward", spy)
    with TestClient(create_app(models, ServeConfig())) as c:
        def ask(i):
            c.post("/v1/chat/completions", json={"model": "slow", "messages": USER, "temperature": 0, "max_tokens": 30})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert max(widths) >= 4 and len(widths) < 6 * 31  # shared steps, not one request after another


def test_a_failing_step_is_a_500_and_the_server_goes_on(monkeypatch):
    tok = char_tokenizer()
    models = served(tok)
    model = models["tiny"].reply.model
    forward = model.forward
    calls = {"n": 0}

    def flaky(idx, cache=None, valid=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return forward(idx, cache=cache, valid=valid)

    monkeypatch.setattr(model, "forward", flaky)
    with TestClient(create_app(models, ServeConfig())) as c:
        body = {"model": "tiny", "messages": USER, "max_tokens": 8, "seed": 1}
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 500 and set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert "boom" not in r.json()["error"]["message"]  # details go to the log, not to the client
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200 and json.loads(r.text)["choices"]
