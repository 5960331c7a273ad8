"""Property-based fuzzing from the server's own OpenAPI schema (schemathesis): a few hundred bodies that follow the
schema and that break it, sent to both completion routes. Zero 5xx; every error in OpenAI's shape."""

from __future__ import annotations

import collections
import json

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from owngpt.serve.app import create_app  # noqa: E402
from owngpt.serve.config import ServeConfig  # noqa: E402
from serve_fixtures import char_tokenizer, served  # noqa: E402

APP = create_app(served(char_tokenizer()), ServeConfig())
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


def check(response) -> int:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    elif "text/event-stream" in str(response.headers.get("content-type")):
        events = [line for line in response.text.split("\n") if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]" or "error" in json.loads(events[-1][6:])
    else:
        assert response.json()["choices"]
    return response.status_code


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_fuzzed_bodies_never_cause_a_server_error(path, mode):
    strategy = SCHEMA[path]["POST"].as_strategy(generation_mode=mode)
    statuses = collections.Counter()

    @settings(max_examples=75, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        statuses[check(case.call())] += 1

    run()
    if mode == schemathesis.GenerationMode.POSITIVE:
        assert statuses[200] >= 5, statuses  # bodies that follow the schema are mostly answered
    else:
        assert statuses[200] < sum(statuses.values()), statuses
