"""Request bodies checked field by field: every mistake is a 400 that names the field (OpenAI's `param`), never a
5xx and never FastAPI's default 422 shape.

Scalars go through THE coercer (owngpt.config.coerce_value, JSON values taken as they are), so an unknown field
is refused with the nearest valid name, as OpenAI refuses it. What the models cannot do (tools, images, audio,
log-probabilities) is refused, not ignored; fields that do not change the answer (`user`, `metadata`, `store`,
`service_tier`, `parallel_tool_calls`, `modalities: ["text"]`) are accepted and ignored.

Sampling defaults: /v1/chat/completions starts from the chat defaults `owngpt chat` uses (owngpt/chat/settings.py:
temperature 0.8, top-k 50, top-p 0.95, repetition penalty 1.1, 128 new tokens) and /v1/completions from the
OpenAI API's own (temperature 1, top-p 1, 16 tokens); a field in the request replaces its default. Extensions (as
vLLM has them): `top_k`, `repetition_penalty`, and `truncation` ("auto" drops the oldest turns, or the start of a
completion prompt, to make room, as `owngpt chat` does; "disabled" answers 400 context_length_exceeded instead).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, get_type_hints

from owngpt.chat.settings import CHAT_DEFAULTS
from owngpt.config import coerce_value, unknown_key
from owngpt.errors import OwnGPTError
from owngpt.generate.settings import SEEDS, GenerationConfig
from owngpt.serve.config import ServeConfig
from owngpt.serve.errors import APIError, invalid

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
COMPLETION_DEFAULTS = GenerationConfig(max_new_tokens=16)
TRUNCATION = ("auto", "disabled")


@dataclass
class _Common:
    """Fields both endpoints take, with their JSON types (checked by the coercer)."""

    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: Any = None
    stop: Any = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Any = None
    seed: int | None = None
    logprobs: Any = None
    user: str | None = None
    # extensions
    top_k: int | None = None
    repetition_penalty: float | None = None
    truncation: str | None = None


@dataclass
class ChatBody(_Common):
    messages: Any = None
    max_completion_tokens: int | None = None
    top_logprobs: Any = None
    response_format: Any = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    prediction: Any = None
    modalities: Any = None
    metadata: Any = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None


@dataclass
class CompletionBody(_Common):
    prompt: Any = None
    echo: bool | None = None
    suffix: Any = None
    best_of: int | None = None


@dataclass
class ParsedRequest:
    """What both endpoints need: the model id, the sampling settings, how many choices, how to answer."""

    model: str
    gen: GenerationConfig
    n: int
    stream: bool
    include_usage: bool
    truncation: str
    max_tokens_given: bool
    messages: list[dict[str, str]] = field(default_factory=list)  # chat
    prompts: list[str] = field(default_factory=list)  # completions
    echo: bool = False  # completions


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; invalid UTF-8, bad JSON or another JSON type is a 400 saying where."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not valid UTF-8 (byte {e.start})", code="invalid_json") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise APIError(400, f"the request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                       code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, not {_json_type(body)}", code="invalid_json")
    return body


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _fields(cls: type, body: dict[str, Any]) -> Any:
    """body as a `cls`, every key checked by THE coercer (unknown keys with the nearest valid name); a wrong one is
    a 400 naming it."""
    names = [f.name for f in fields(cls)]
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key not in names:
            raise APIError(400, str(unknown_key(key, names, "the request")), param=key, code="unknown_parameter")
        try:
            values[key] = coerce_value(value, hints[key], key, parse_text=False)
        except OwnGPTError as e:
            raise APIError(400, str(e), param=key, code="invalid_type") from None
    return cls(**values)


def _range(name: str, value: float | None, lo: float, hi: float, *, lo_open: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo):
        raise invalid(name, f"must be {'above' if lo_open else 'at least'} {lo:g} and at most {hi:g}, not {value!r}")


def _refuse_unsupported(body: Any) -> None:
    unsupported = {"tools": "tool calls", "tool_choice": "tool calls", "functions": "function calls",
                   "function_call": "function calls", "audio": "audio output", "prediction": "predicted outputs"}
    for name, what in unsupported.items():
        if getattr(body, name, None) not in (None, [], "none", False):
            raise invalid(name, f"{what} are not supported by this server's models", "unsupported_parameter")
    for name in ("logprobs", "top_logprobs"):
        if getattr(body, name, None) not in (None, False, 0):
            raise invalid(name, "log-probabilities are not returned by this server", "unsupported_parameter")
    fmt = getattr(body, "response_format", None)
    if fmt is not None and fmt != {"type": "text"}:
        raise invalid("response_format", "only {\"type\": \"text\"} is supported", "unsupported_parameter")
    modalities = getattr(body, "modalities", None)
    if modalities is not None and modalities != ["text"]:
        raise invalid("modalities", "only [\"text\"] is supported", "unsupported_parameter")


def _stop(stop: Any, cfg: ServeConfig) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop", "must be a string or a list of strings", "invalid_type")
    if len(stops) > cfg.max_stop:
        raise invalid("stop", f"at most {cfg.max_stop} stop strings, not {len(stops)}")
    if any(not s or len(s) > 200 for s in stops):
        raise invalid("stop", "each stop string must have 1 to 200 characters")
    _check_text("stop", *stops)
    return stops


def _logit_bias(bias: Any) -> dict[int, float]:
    if bias is None:
        return {}
    if not isinstance(bias, dict) or len(bias) > 1024:
        raise invalid("logit_bias", "must be an object of at most 1024 token ids (as strings) to numbers")
    out = {}
    for k, v in bias.items():
        if not (isinstance(k, str) and k.isascii() and k.isdigit() and len(k) < 10):
            raise invalid("logit_bias", f"key {k[:20]!r} is not a token id")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -100 <= v <= 100:
            raise invalid("logit_bias", f"the bias of token {k} must be a number from -100 to 100")
        out[int(k)] = float(v)
    return out


def _include_usage(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise invalid("stream_options", "must be an object such as {\"include_usage\": true}", "invalid_type")
    if not stream:
        raise invalid("stream_options", "is only allowed with \"stream\": true")
    unknown = set(options) - {"include_usage", "include_obfuscation"}
    if unknown:
        raise invalid("stream_options", f"unknown option {sorted(unknown)[0]!r}; known: include_usage")
    usage = options.get("include_usage", False)
    if not isinstance(usage, bool):
        raise invalid("stream_options.include_usage", "must be true or false", "invalid_type")
    return usage


def _check_text(param: str, *texts: str) -> None:
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(param, "holds a lone surrogate (\\ud800-\\udfff), which is not text") from None


def _sampling(body: _Common, base: GenerationConfig, cfg: ServeConfig, max_tokens: int | None,
              truncation_default: str) -> tuple[GenerationConfig, int, str]:
    """The GenerationConfig a request asks for, its n and its truncation."""
    _range("temperature", body.temperature, 0, 2)
    _range("top_p", body.top_p, 0, 1, lo_open=True)
    _range("presence_penalty", body.presence_penalty, -2, 2)
    _range("frequency_penalty", body.frequency_penalty, -2, 2)
    _range("repetition_penalty", body.repetition_penalty, 0, 10, lo_open=True)
    _range("top_k", body.top_k, 0, 1 << 30)
    _range("n", body.n, 1, cfg.max_n)
    _range("seed", body.seed, -(1 << 63), SEEDS - 1)
    _range("max_tokens", max_tokens, 1, 1 << 62)
    given: dict[str, Any] = {k: getattr(body, k) for k in ("temperature", "top_p", "top_k", "repetition_penalty",
                                                           "presence_penalty", "frequency_penalty")
                             if getattr(body, k) is not None}
    if max_tokens is not None:
        given["max_new_tokens"] = max_tokens
    if body.seed is not None:
        given["seed"] = body.seed % SEEDS  # OpenAI seeds may be negative 64-bit integers
    given["stop"] = _stop(body.stop, cfg)
    given["logit_bias"] = _logit_bias(body.logit_bias)
    truncation = truncation_default if body.truncation is None else body.truncation
    if truncation not in TRUNCATION:
        raise invalid("truncation", f"must be \"auto\" or \"disabled\", not {json.dumps(truncation)[:40]}")
    try:
        gen = replace(base, **given)
    except OwnGPTError as e:
        raise invalid("request", str(e)) from None
    return gen, body.n or 1, truncation


def chat_request(raw: dict[str, Any], cfg: ServeConfig) -> ParsedRequest:
    """A /v1/chat/completions body, checked."""
    body = _fields(ChatBody, raw)
    model = _model(body.model)
    _refuse_unsupported(body)
    messages = _messages(body.messages, cfg)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    gen, n, truncation = _sampling(body, CHAT_DEFAULTS, cfg, max_tokens, "auto")
    stream = bool(body.stream)
    return ParsedRequest(model, gen, n, stream, _include_usage(body.stream_options, stream), truncation,
                         max_tokens is not None, messages=messages)


def completion_request(raw: dict[str, Any], cfg: ServeConfig) -> ParsedRequest:
    """A /v1/completions body, checked: `prompt` a string or a list of strings."""
    body = _fields(CompletionBody, raw)
    model = _model(body.model)
    _refuse_unsupported(body)
    if body.suffix not in (None, ""):
        raise invalid("suffix", "inserting text (a suffix) is not supported", "unsupported_parameter")
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise invalid("prompt", "must be a string or a non-empty list of strings (token-id prompts are not "
                      "supported)", "invalid_type")
    if len(prompts) > cfg.max_n:
        raise invalid("prompt", f"at most {cfg.max_n} prompts in one request, not {len(prompts)}")
    for i, p in enumerate(prompts):
        if len(p) > cfg.max_message_chars:
            raise invalid("prompt", f"prompt {i} has {len(p):,} characters: at most {cfg.max_message_chars:,}")
        _check_text("prompt", p)
    gen, n, truncation = _sampling(body, COMPLETION_DEFAULTS, cfg, body.max_tokens, "disabled")
    if body.best_of is not None and body.best_of != n:
        raise invalid("best_of", "only best_of equal to n (or left out) is supported", "unsupported_parameter")
    if n * len(prompts) > cfg.max_n:
        raise invalid("n", f"n × prompts = {n * len(prompts)}: at most {cfg.max_n} choices per request")
    stream = bool(body.stream)
    return ParsedRequest(model, gen, n, stream, _include_usage(body.stream_options, stream), truncation,
                         body.max_tokens is not None, prompts=prompts, echo=bool(body.echo))


def _model(model: str | None) -> str:
    if not model:
        raise invalid("model", "give the id of a served model (GET /v1/models lists them)", "missing_model")
    return model


def _messages(messages: Any, cfg: ServeConfig) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "must be a non-empty list of {\"role\", \"content\"} objects",
                      "missing_messages" if messages is None else "invalid_type")
    if len(messages) > cfg.max_messages:
        raise invalid("messages", f"at most {cfg.max_messages} messages in one request, not {len(messages)}")
    checked = [_message(m, i, cfg) for i, m in enumerate(messages)]
    for i, m in enumerate(checked[1:], 1):
        if m["role"] == "system":
            raise invalid(f"messages[{i}].role", "a system (or developer) message may only come first")
    if checked[-1]["role"] != "user":
        raise invalid(f"messages[{len(checked) - 1}].role", "the last message must be the user's: the model writes "
                      "the next assistant turn")
    return checked


MESSAGE_KEYS = {"role", "content", "name", "refusal"}


def _message(m: Any, i: int, cfg: ServeConfig) -> dict[str, str]:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise invalid(where, "must be an object with \"role\" and \"content\"", "invalid_type")
    role = m.get("role")
    if role not in ROLES:
        supported = "tool messages are not supported" if role == "tool" else "use system, user or assistant"
        raise invalid(f"{where}.role", f"{json.dumps(role)[:40]} is not a role this server knows: {supported}",
                      "invalid_role")
    for key in m:
        if key not in MESSAGE_KEYS:
            what = "tool calls are not supported" if key in ("tool_calls", "tool_call_id", "function_call") else \
                f"known keys: {', '.join(sorted(MESSAGE_KEYS))}"
            raise invalid(f"{where}.{key}", f"unknown key in a message; {what}", "unknown_parameter")
    content = m.get("content")
    if isinstance(content, list):  # OpenAI's content parts: only text ones
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else _json_type(part)
                raise invalid(f"{where}.content[{j}]", f"only text parts ({{\"type\": \"text\", \"text\": ...}}) are "
                              f"supported, not {json.dumps(kind)[:40]}", "unsupported_content")
            texts.append(part["text"])
        content = "\n".join(texts)
    if not isinstance(content, str):
        raise invalid(f"{where}.content", "must be a string or a list of text parts", "invalid_type")
    if len(content) > cfg.max_message_chars:
        raise invalid(f"{where}.content", f"{len(content):,} characters: at most {cfg.max_message_chars:,} per message")
    _check_text(f"{where}.content", content)
    return {"role": ROLES[role], "content": content}
