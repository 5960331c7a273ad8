"""ServeConfig: where the server listens, who may call it, how much one request may ask for, and how many replies
are decoded together."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from owngpt.errors import OwnGPTError

LOOPBACK = ("127.0.0.1", "::1", "localhost")
MIN_KEY_CHARS = 8


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback only unless asked: a model and what it learned stay on this machine
    port: int = 8000
    api_keys: list[str] = field(default_factory=list)  # empty: no key needed (warned about off loopback)
    cors_origins: list[str] = field(default_factory=list)  # empty: no CORS headers (browsers refuse other sites)
    max_body_bytes: int = 1 << 20  # a request body over this is a 413
    max_messages: int = 256  # messages in one chat request
    max_message_chars: int = 32_000  # characters of one message (or one prompt)
    max_n: int = 8  # choices per request (at most max_batch)
    max_stop: int = 4  # stop strings per request (as OpenAI)
    max_batch: int = 32  # rows (choices) decoded together in one step, over all requests
    queue_size: int = 64  # requests waiting for a place in the batch; one more is a 429 with Retry-After
    request_timeout_s: float = 300.0  # a reply still running after this ends with finish_reason "length"
    keep_alive_s: float = 10.0  # an SSE comment this often while a stream has nothing else to send
    log_prompts: bool = False  # prompts and replies are never logged unless this is on

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_messages", "max_message_chars", "max_n", "max_stop", "max_batch",
                     "queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OwnGPTError(f"serve setting {name} must be an integer >= 1, not {value!r}")
        self.max_n = min(self.max_n, self.max_batch)  # the choices of one request are decoded together
        for name in ("request_timeout_s", "keep_alive_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise OwnGPTError(f"serve setting {name} must be a number of seconds > 0, not {value!r}")
        if not 0 <= self.port <= 65535:
            raise OwnGPTError(f"--port must be from 0 to 65535, not {self.port}")
        short = [k for k in self.api_keys if not isinstance(k, str) or len(k.strip()) < MIN_KEY_CHARS]
        if short:
            raise OwnGPTError(f"an API key must have at least {MIN_KEY_CHARS} characters (one of the {len(self.api_keys)} "
                              "given is shorter); make one with: python -c 'import secrets; print(secrets.token_urlsafe())'")
        self.api_keys = [k.strip() for k in self.api_keys]

    @property
    def exposed(self) -> bool:
        """Whether the server listens beyond this machine."""
        return self.host not in LOOPBACK
