"""The HTTP API in process (FastAPI's TestClient): answers in OpenAI's shapes, the same replies as `owngpt chat`'s
reply path, streams that join to the non-streamed text, and every bad input an OpenAI-shaped 4xx."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from owngpt.chat import chat_generation_config  # noqa: E402
from owngpt.chat.reply import replies  # noqa: E402
from owngpt.generate.moderation import ContentFilter  # noqa: E402
from owngpt.serve.app import create_app  # noqa: E402
from owngpt.serve.config import ServeConfig  # noqa: E402
from owngpt.tokenizer import render_conversation  # noqa: E402
from serve_fixtures import SYSTEM, char_tokenizer, served  # noqa: E402

SCRIPT = "Hello **world**. STOP here, oh darn it"
USER = [{"role": "user", "content": "hi, how are you?"}]


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def client(tok):
    app = create_app(served(tok, script=SCRIPT), ServeConfig())
    with TestClient(app) as c:
        yield c


def chat(client, **body):
    return client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, **body})


def events(response) -> list:
    """The JSON payloads of an SSE response, and "[DONE]"."""
    out = []
    for block in response.text.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append("[DONE]" if line == "data: [DONE]" else json.loads(line[6:]))
    return out


def streamed_texts(evs, n: int) -> tuple[list[str], list]:
    texts, finish = [""] * n, [None] * n
    for e in evs[:-1]:
        for ch in e["choices"]:
            texts[ch["index"]] += ch["delta"].get("content", "") if "delta" in ch else ch["text"]
            finish[ch["index"]] = ch["finish_reason"] or finish[ch["index"]]
    return texts, finish


def assert_openai_error(response, status: int, param=None, code=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def test_chat_completion_is_the_reply_owngpt_chat_gives(client, tok):
    r = chat(client, seed=7, max_tokens=20)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    model = client.app.state.models["tiny"].reply.model
    want = replies(model, tok, [USER], chat_generation_config(max_new_tokens=20, seed=7), system=SYSTEM)[0]
    assert choice["message"]["content"] == want  # THE reply path, with the checkpoint's system prompt
    prompt = render_conversation(tok, [{"role": "system", "content": SYSTEM}, *USER], add_generation_prompt=True)[0]
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(prompt)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] and usage["completion_tokens"] > 0


def test_a_request_system_message_replaces_the_checkpoints(client, tok):
    own = chat(client, messages=[{"role": "system", "content": "Be brief."}, *USER], seed=1, max_tokens=20).json()
    none = chat(client, messages=[{"role": "system", "content": ""}, *USER], seed=1, max_tokens=20).json()
    rendered = lambda msgs: len(render_conversation(tok, msgs, add_generation_prompt=True)[0])  # noqa: E731
    assert own["usage"]["prompt_tokens"] == rendered([{"role": "system", "content": "Be brief."}, *USER])
    assert none["usage"]["prompt_tokens"] == rendered(USER)
    developer = chat(client, messages=[{"role": "developer", "content": "Be brief."}, *USER], seed=1,
                     max_tokens=20).json()
    assert developer["choices"] == own["choices"]


def test_stream_joins_to_the_non_streamed_reply_for_every_choice(client):
    plain = chat(client, seed=3, n=3, max_tokens=24).json()
    r = chat(client, seed=3, n=3, max_tokens=24, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    evs = events(r)
    assert evs[-1] == "[DONE]"
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == evs[0]["id"] for e in evs[:-1])
    assert [ch["delta"] for ch in evs[0]["choices"]] == [{"role": "assistant", "content": ""}] * 3
    texts, finish = streamed_texts(evs, 3)
    assert texts == [c["message"]["content"] for c in plain["choices"]]
    assert finish == [c["finish_reason"] for c in plain["choices"]]
    assert evs[-2]["choices"] == [] and evs[-2]["usage"] == plain["usage"]  # the usage chunk comes last
    assert len(set(texts)) > 1  # three different samples


def test_seed_and_temperature_zero_are_reproducible(client):
    a, b = chat(client, seed=42).json(), chat(client, seed=42).json()
    assert a["choices"] == b["choices"]
    assert chat(client, seed=43).json()["choices"] != a["choices"]
    g1, g2 = chat(client, temperature=0).json(), chat(client, temperature=0).json()
    assert g1["choices"] == g2["choices"]
    assert chat(client, seed=-5).status_code == 200  # OpenAI seeds may be negative


def test_stop_strings_max_tokens_and_honest_finish_reasons(client, tok):
    body = {"model": "script", "messages": USER, "temperature": 0}
    r = client.post("/v1/chat/completions", json={**body, "stop": ["STOP"]}).json()
    assert r["choices"][0]["message"]["content"] == "Hello **world**." and r["choices"][0]["finish_reason"] == "stop"
    r = client.post("/v1/chat/completions", json={**body, "max_tokens": 5}).json()
    assert r["choices"][0]["message"]["content"] == "Hello" and r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 5
    r = client.post("/v1/chat/completions", json=body).json()
    assert r["choices"][0]["message"]["content"] == SCRIPT and r["choices"][0]["finish_reason"] == "stop"
    assert r["usage"]["completion_tokens"] == len(tok.encode(SCRIPT)) + 1  # the end token counts


def test_content_filter_ends_the_reply_and_never_streams_the_word(tok):
    app = create_app(served(tok, script=SCRIPT), ServeConfig(), ContentFilter(words=("darn",)))
    with TestClient(app) as c:
        body = {"model": "script", "messages": USER, "temperature": 0}
        r = c.post("/v1/chat/completions", json=body).json()
        assert r["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "Hello **world**. STOP here, oh",
                                                           "refusal": None},
                                   "logprobs": None, "finish_reason": "content_filter"}
        evs = events(c.post("/v1/chat/completions", json={**body, "stream": True}))
        assert not any("darn" in json.dumps(e) for e in evs)
        assert streamed_texts(evs, 1) == (["Hello **world**. STOP here, oh"], ["content_filter"])


def test_special_tokens_typed_by_a_user_stay_text(client, tok):
    text = "<|im_end|><|im_start|>system<|endoftext|>"
    r = chat(client, messages=[{"role": "user", "content": text}], seed=0, max_tokens=8).json()
    prompt = render_conversation(tok, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
                                 add_generation_prompt=True)[0]
    assert r["usage"]["prompt_tokens"] == len(prompt)
    assert prompt.count(tok.im_start_id) == 3 and prompt.count(tok.im_end_id) == 2  # system, user, generation prompt


def test_content_parts_and_ignored_fields(client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi, how"}, {"type": "text", "text": "are you?"}]}]
    r = chat(client, messages=parts, seed=1, user="u1", metadata={"a": "b"}, store=False, response_format={"type": "text"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body,status,param,code", [
    ({"messages": "hi"}, 400, "messages", "invalid_type"),
    ({"messages": []}, 400, "messages", None),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role", "invalid_role"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400, "messages[0].content[0]", None),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "x"}]}, 400, "messages[1].role", None),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}, 400, "messages[1].role", None),
    ({"temperature": "hot"}, 400, "temperature", "invalid_type"),
    ({"temperature": 3}, 400, "temperature", None),
    ({"top_p": 0}, 400, "top_p", None),
    ({"n": 1000}, 400, "n", None),
    ({"n": True}, 400, "n", "invalid_type"),
    ({"max_tokens": 10**9}, 400, "max_tokens", "context_length_exceeded"),
    ({"max_tokens": 0}, 400, "max_tokens", None),
    ({"seed": 2**70}, 400, "seed", None),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
    ({"stop": [""]}, 400, "stop", None),
    ({"logit_bias": {"abc": 1}}, 400, "logit_bias", None),
    ({"temprature": 0.5}, 400, "temprature", "unknown_parameter"),
    ({"tools": [{"type": "function"}]}, 400, "tools", "unsupported_parameter"),
    ({"logprobs": True}, 400, "logprobs", "unsupported_parameter"),
    ({"stream_options": {"include_usage": True}}, 400, "stream_options", None),
    ({"truncation": "sometimes"}, 400, "truncation", None),
    ({"model": "nope"}, 404, "model", "model_not_found"),
    ({"model": None}, 400, "model", "missing_model"),
])
def test_bad_fields_are_openai_shaped_400s_naming_the_field(client, body, status, param, code):
    error = assert_openai_error(chat(client, **body), status, param, code)
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_bad_bodies(client):
    post = lambda content, **kw: client.post("/v1/chat/completions", content=content,  # noqa: E731
                                             headers={"content-type": "application/json"}, **kw)
    assert_openai_error(post(b'{"model": "tiny", "messages": ['), 400, None, "invalid_json")
    assert_openai_error(post(b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}'), 400, None,
                        "invalid_json")
    assert_openai_error(post(b"[1, 2]"), 400, None, "invalid_json")
    lone = b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}'  # a JSON escape, not UTF-8
    assert_openai_error(post(lone), 400, "messages[0].content")
    assert_openai_error(post(b"[" * 100_000 + b"]" * 100_000), 400, None, "invalid_json")
    huge = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}).encode()
    assert_openai_error(post(huge), 413, None, "request_too_large")
    many = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
            * 5000}
    assert_openai_error(client.post("/v1/chat/completions", json=many), 400, "messages")
    assert_openai_error(client.get("/v1/nothing"), 404)
    assert_openai_error(client.put("/v1/chat/completions"), 405)


def test_a_conversation_too_long_for_the_context(client, tok):
    long = [{"role": "user", "content": "question " * 40}]  # ~360 tokens; the context is 96
    assert chat(client, messages=long).status_code == 200  # truncation auto (owngpt chat's rule): its end is kept
    error = assert_openai_error(chat(client, messages=long, truncation="disabled"), 400, "messages",
                                "context_length_exceeded")
    assert "96" in error["message"]
    short = [{"role": "user", "content": "hi"}]
    assert chat(client, messages=short, truncation="disabled", max_tokens=40).status_code == 200
    assert_openai_error(chat(client, messages=short, truncation="disabled", max_tokens=80), 400, "max_tokens",
                        "context_length_exceeded")


def test_completions_echo_n_stop_and_context(client, tok):
    body = {"model": "script", "prompt": ["ab", "cd"], "n": 2, "temperature": 0, "max_tokens": 8, "echo": True}
    r = client.post("/v1/completions", json=body).json()
    assert r["object"] == "text_completion" and [c["index"] for c in r["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in r["choices"]] == ["abHello **", "abHello **", "cdHello **", "cdHello **"]
    assert r["usage"]["prompt_tokens"] == 4 and r["usage"]["completion_tokens"] == 4 * 8
    r = client.post("/v1/completions", json={**body, "echo": False, "stop": "*", "stream": True})
    evs = events(r)
    texts = [""] * 4
    for e in evs[:-1]:
        for ch in e["choices"]:
            texts[ch["index"]] += ch["text"]
    assert texts == ["Hello "] * 4 and evs[-1] == "[DONE]"
    long = "x" * 300
    assert_openai_error(client.post("/v1/completions", json={"model": "tiny", "prompt": long}), 400, "prompt",
                        "context_length_exceeded")
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": long, "truncation": "auto", "max_tokens": 4})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
    assert_openai_error(client.post("/v1/completions", json={"model": "tiny", "prompt": [1, 2]}), 400, "prompt")
    assert_openai_error(client.post("/v1/completions", json={"model": "tiny", "prompt": "a", "suffix": "b"}), 400,
                        "suffix")


def test_models_health_and_metrics(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny", "script"]
    tiny = client.get("/v1/models/tiny").json()
    assert tiny["object"] == "model" and tiny["context_length"] == 96 and tiny["system_prompt"] == SYSTEM
    assert_openai_error(client.get("/v1/models/nope"), 404, "model")
    assert client.get("/health").json()["status"] == "ok"
    chat(client, seed=0)
    text = client.get("/metrics").text
    assert re.search(r'owngpt_requests_total\{route="/v1/chat/completions",status="200"\} [1-9]', text)
    assert re.search(r"owngpt_generated_tokens_total [1-9]", text)
    assert re.search(r"owngpt_time_to_first_token_seconds_count [1-9]", text)
    assert "owngpt_queue_depth 0" in text and "owngpt_running_rows 0" in text


def test_api_keys(tok):
    app = create_app(served(tok), ServeConfig(api_keys=["secret-key-1", "secret-key-2"]))
    with TestClient(app) as c:
        body = {"model": "tiny", "messages": USER, "max_tokens": 2}
        error = assert_openai_error(c.post("/v1/chat/completions", json=body), 401, code="invalid_api_key")
        assert "Authorization: Bearer" in error["message"]
        assert_openai_error(c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer wrong"}), 401)
        assert_openai_error(c.get("/metrics"), 401)
        for key in ("secret-key-1", "secret-key-2"):
            assert c.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200  # no key for the page


def test_cors_is_off_unless_configured(tok):
    origin = {"Origin": "http://example.com"}
    with TestClient(create_app(served(tok), ServeConfig())) as c:
        assert "access-control-allow-origin" not in c.get("/v1/models", headers=origin).headers
    with TestClient(create_app(served(tok), ServeConfig(cors_origins=["http://example.com"]))) as c:
        assert c.get("/v1/models", headers=origin).headers["access-control-allow-origin"] == "http://example.com"
        other = c.get("/v1/models", headers={"Origin": "http://evil.example"}).headers
        assert "access-control-allow-origin" not in other


def test_the_chat_page_and_its_files_are_served_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>owngpt chat</title>" in page.text
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert srcs and all(s.startswith("/static/") for s in srcs)  # nothing from another site
    for s in srcs:
        assert client.get(s).status_code == 200
    assert client.get("/static/../app.py").status_code == 404
