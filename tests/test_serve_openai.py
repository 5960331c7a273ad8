"""The official `openai` Python package, unchanged, against a live `owngpt serve` on 127.0.0.1: chat and text
completions, streaming, n > 1, stop, seeds, and its own exception types for the server's errors."""

from __future__ import annotations

import threading
import time

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from owngpt.serve.app import create_app  # noqa: E402
from owngpt.serve.config import ServeConfig  # noqa: E402
from serve_fixtures import ScriptLM, char_tokenizer, live_server, served  # noqa: E402

KEY = "test-key-0123456789"
SCRIPT = "Hello there. STOP now"
USER = [{"role": "user", "content": "hi, how are you?"}]


@pytest.fixture(scope="module")
def server():
    tok = char_tokenizer()
    models = served(tok, script=SCRIPT)
    slow = ScriptLM(tok, "slow " * 40, delay=0.05)  # a reply that takes ~10 s: keeps the batch busy
    models["slow"] = type(models["script"])("slow", type(models["script"].reply)(slow, tok, None, None), "mem")
    cfg = ServeConfig(api_keys=[KEY], max_batch=3, queue_size=1)
    with live_server(create_app(models, cfg)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_chat_completion_and_stream_agree(client):
    done = client.chat.completions.create(model="tiny", messages=USER, seed=5, max_tokens=16)
    assert done.object == "chat.completion" and done.choices[0].message.role == "assistant"
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    pieces, finish = [], None
    stream = client.chat.completions.create(model="tiny", messages=USER, seed=5, max_tokens=16, stream=True,
                                            stream_options={"include_usage": True})
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            pieces.append(ch.delta.content or "")
            finish = ch.finish_reason or finish
    assert "".join(pieces) == done.choices[0].message.content and finish == done.choices[0].finish_reason
    assert usage == done.usage


def test_n_stop_and_seed(client):
    many = client.chat.completions.create(model="tiny", messages=USER, n=3, seed=11, max_tokens=12)
    assert [c.index for c in many.choices] == [0, 1, 2] and len({c.message.content for c in many.choices}) == 3
    again = client.chat.completions.create(model="tiny", messages=USER, n=3, seed=11, max_tokens=12)
    assert [c.message.content for c in again.choices] == [c.message.content for c in many.choices]
    stopped = client.chat.completions.create(model="script", messages=USER, stop=["STOP"], temperature=0)
    assert stopped.choices[0].message.content == "Hello there." and stopped.choices[0].finish_reason == "stop"
    text = client.completions.create(model="script", prompt="ab", max_tokens=5, temperature=0)
    assert text.choices[0].text == "Hello" and text.choices[0].finish_reason == "length"
    assert [m.id for m in client.models.list()] == ["tiny", "script", "slow"]


def test_errors_are_the_clients_own_exception_types(client, server):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=USER, temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=USER, max_tokens=10**9)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=USER)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong-key-000", max_retries=0).models.list()


def test_a_full_queue_is_a_rate_limit_error_with_retry_after(client):
    """max_batch 3, queue 1: three slow replies run, one waits, the next is refused with 429 and Retry-After."""
    started = threading.Barrier(5)
    results = []

    def slow():
        started.wait()
        try:
            results.append(client.chat.completions.create(model="slow", messages=USER, temperature=0, max_tokens=30))
        except openai.APIError as e:
            results.append(e)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.5)  # the four are in: three decoding, one waiting
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="slow", messages=USER, max_tokens=2)
    assert e.value.response.headers["retry-after"] == "1"
    for t in threads:
        t.join()
    assert all(not isinstance(r, Exception) for r in results), results
