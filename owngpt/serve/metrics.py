"""Counters for GET /metrics, in Prometheus' text format (a handful of series: no client library needed)."""

from __future__ import annotations

import threading
from collections import Counter

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """What the server did since it started; safe to update from the decode thread and the event loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()  # (route, status) -> count
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft = [0] * (len(TTFT_BUCKETS) + 1)  # per bucket (the last: +Inf)
        self.ttft_sum = 0.0
        self.cancelled = 0  # jobs that left the batch before they ended (client gone, Stop)
        self.rejected = 0  # requests refused because the queue was full

    def request(self, route: str, status: int) -> None:
        with self.lock:
            self.requests[(route, status)] += 1

    def finished(self, prompt: int, completion: int) -> None:
        with self.lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion

    def first_token(self, seconds: float) -> None:
        with self.lock:
            i = next((i for i, b in enumerate(TTFT_BUCKETS) if seconds <= b), len(TTFT_BUCKETS))
            self.ttft[i] += 1
            self.ttft_sum += seconds

    def render(self, queue_depth: int, rows_running: int) -> str:
        def series(name: str, kind: str, help: str, samples: list[tuple[str, float | int]]) -> list[str]:
            """HELP, TYPE and one line per sample; a sample's suffix may carry labels or a histogram part."""
            return [f"# HELP {name} {help}", f"# TYPE {name} {kind}"] + [f"{name}{labels} {value}"
                                                                         for labels, value in samples]

        with self.lock:
            lines = series("owngpt_requests_total", "counter", "HTTP requests answered, by route and status.",
                           [(f'{{route="{r}",status="{s}"}}', n) for (r, s), n in sorted(self.requests.items())])
            lines += series("owngpt_prompt_tokens_total", "counter", "Prompt tokens read.", [("", self.prompt_tokens)])
            lines += series("owngpt_generated_tokens_total", "counter", "Tokens generated.",
                            [("", self.completion_tokens)])
            lines += series("owngpt_cancelled_total", "counter", "Replies stopped before their end (client gone, Stop).",
                            [("", self.cancelled)])
            lines += series("owngpt_rejected_total", "counter", "Requests refused with 429: the queue was full.",
                            [("", self.rejected)])
            lines += series("owngpt_queue_depth", "gauge", "Requests waiting for a place in the batch.",
                            [("", queue_depth)])
            lines += series("owngpt_running_rows", "gauge", "Replies (choices) being decoded together.",
                            [("", rows_running)])
            buckets, total = [], 0
            for b, n in zip((*map(str, TTFT_BUCKETS), "+Inf"), self.ttft):
                total += n
                buckets.append((f'_bucket{{le="{b}"}}', total))
            lines += series("owngpt_time_to_first_token_seconds", "histogram",
                            "From a request's arrival to its first generated text.",
                            buckets + [("_sum", round(self.ttft_sum, 6)), ("_count", total)])
        return "\n".join(lines) + "\n"
