"""The request and response bodies as JSON Schema, for the server's OpenAPI document (GET /openapi.json): what a
client generator or a fuzzer (tests/test_serve_fuzz.py) reads. Bodies are checked by owngpt/serve/requests.py, not
by these schemas; they describe the same rules."""

from __future__ import annotations

from typing import Any

from owngpt.serve.config import ServeConfig


def _number(lo: float, hi: float, description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": lo, "maximum": hi, "nullable": True, "description": description}


def _sampling(cfg: ServeConfig, models: list[str]) -> dict[str, Any]:
    return {
        "model": {"type": "string", "enum": models, "description": "A served model's id (GET /v1/models)."},
        "temperature": _number(0, 2, "0 is greedy."),
        "top_p": {**_number(0, 1, "Nucleus sampling; 1 is off."), "exclusiveMinimum": True},
        "n": {"type": "integer", "minimum": 1, "maximum": cfg.max_n, "nullable": True},
        "stream": {"type": "boolean", "nullable": True},
        "stream_options": {"type": "object", "nullable": True,
                           "properties": {"include_usage": {"type": "boolean"}}, "additionalProperties": False},
        "stop": {"nullable": True, "oneOf": [
            {"type": "string", "minLength": 1, "maxLength": 200},
            {"type": "array", "maxItems": cfg.max_stop, "items": {"type": "string", "minLength": 1, "maxLength": 200}}]},
        "max_tokens": {"type": "integer", "minimum": 1, "nullable": True},
        "presence_penalty": _number(-2, 2, "Subtracted once from the logit of every token already generated."),
        "frequency_penalty": _number(-2, 2, "Subtracted from a token's logit once per time it was generated."),
        "logit_bias": {"type": "object", "nullable": True, "additionalProperties": {"type": "number", "minimum": -100,
                                                                                     "maximum": 100},
                       "description": "Token id (a string of digits) -> bias added to its logit."},
        "seed": {"type": "integer", "nullable": True, "description": "The same seed and request give the same text."},
        "user": {"type": "string", "nullable": True},
        "top_k": {"type": "integer", "minimum": 0, "nullable": True, "description": "owngpt: sample from the k most "
                                                                                    "likely tokens; 0 is off."},
        "repetition_penalty": {**_number(0, 10, "owngpt: CTRL's repetition penalty; 1 is off."),
                               "exclusiveMinimum": True},
        "truncation": {"type": "string", "enum": ["auto", "disabled"], "nullable": True,
                       "description": "owngpt: auto drops the oldest turns (chat) or the prompt's start (completions) "
                                      "to make room; disabled answers 400 context_length_exceeded."},
    }


def chat_request_schema(cfg: ServeConfig, models: list[str]) -> dict[str, Any]:
    text_part = {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}
    message = {"type": "object", "required": ["role", "content"], "additionalProperties": False, "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
        "content": {"oneOf": [{"type": "string", "maxLength": cfg.max_message_chars},
                              {"type": "array", "items": text_part}]},
        "name": {"type": "string"}}}
    return {"type": "object", "required": ["model", "messages"], "additionalProperties": False, "properties": {
        **_sampling(cfg, models),
        "messages": {"type": "array", "minItems": 1, "maxItems": cfg.max_messages, "items": message},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "nullable": True}}}


def completion_request_schema(cfg: ServeConfig, models: list[str]) -> dict[str, Any]:
    return {"type": "object", "required": ["model", "prompt"], "additionalProperties": False, "properties": {
        **_sampling(cfg, models),
        "prompt": {"oneOf": [{"type": "string", "maxLength": cfg.max_message_chars},
                             {"type": "array", "minItems": 1, "maxItems": cfg.max_n,
                              "items": {"type": "string", "maxLength": cfg.max_message_chars}}]},
        "echo": {"type": "boolean", "nullable": True}}}


ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}


def _openapi31(node: Any) -> Any:
    """`nullable: true` (written above for brevity) as OpenAPI 3.1 says it: null among the types."""
    if isinstance(node, list):
        return [_openapi31(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _openapi31(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "type" in node:
            node["type"] = [node["type"], "null"]
        else:
            node["oneOf"] = [*node.get("oneOf", []), {"type": "null"}]
    return node


def body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself: the body's schema and the error answers."""
    schema = _openapi31(schema)
    errors = {str(s): {"description": d, "content": {"application/json": {"schema": ERROR}}}
              for s, d in ((400, "Invalid request (the field is named in `param`)"), (401, "Missing or wrong API key"),
                           (404, "Unknown model"), (413, "Body too large"), (429, "Queue full: retry after Retry-After"))}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {"200": {"description": "The completion (JSON), or server-sent events with \"stream\": true"},
                          **errors}}
