"""`owngpt serve` under load: aggregate generated tokens/s at 1, 4, 16 and 32 concurrent streaming clients, against
serving the same requests one at a time (1 client) in the same run; p50/p95 time to first token and between
streamed chunks (inter-token latency).

The server runs as its own process (`python -m owngpt serve`, the CLI users run); the clients are a minimal
HTTP/1.1 SSE reader on asyncio in this process (the `openai` package builds a pydantic object per chunk, CPU that
would be taken from the server on a 2-core machine; tests/test_serve_openai.py covers that client). Every level
sends the same requests (the same conversations and seeds, so the same replies: a seeded request does not depend
on what shares its batch), pulled from one queue by N clients. Models: a chat run (default runs/quickstart/chat, the quickstart's model) and a GPT-2-124M-shaped model
with random weights (the run's tokenizer, or a character one).

    python benchmarks/bench_serve.py [--run runs/quickstart/chat] [--no-124m] [--requests 64] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

QUESTIONS = ["Hi! What is your name?", "What do you like to do on weekends?", "Who made you?", "Do you like cats?",
             "What did you eat today?", "Tell me about your family.", "Is it going to rain tomorrow?",
             "What is your favourite book?", "How was your day?", "Can you recommend a movie?",
             "What music do you listen to?", "Where would you like to travel?", "Do you play any sport?",
             "What are you doing right now?", "How old are you?", "What makes you happy?"]


def cpu_description() -> str:
    """The CPU's model name and the flags that decide its fast paths."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{name} ({os.cpu_count()} cores; {', '.join(have) or 'no AVX2'})"


def random_124m_run(folder: Path, tokenizer_from: str | None) -> Path:
    """A run folder holding a GPT-2-124M-shaped model with random weights (and a tokenizer)."""
    import torch

    from owngpt.checkpoint.format import save_checkpoint
    from owngpt.checkpoint.meta import CheckpointMeta
    from owngpt.config import ModelConfig
    from owngpt.model.gpt import GPT
    from owngpt.tokenizer import Tokenizer, train_char

    tok = Tokenizer.load(Path(tokenizer_from) / "best" / "tokenizer") if tokenizer_from else train_char(QUESTIONS)
    torch.manual_seed(0)
    model = GPT(ModelConfig(preset="gpt2", vocab_size=50304, block_size=1024, depth=12))
    meta = CheckpointMeta(model_config=asdict(model.cfg), tokenizer_hash=tok.hash)
    save_checkpoint(folder, 1, model.state_dict(), meta, None, tokenizer=tok, best=True)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, max_batch: int, threads: int) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "owngpt", "serve", str(run), "--port", str(port), "--max-batch",
                             str(max_batch), "--queue-size", "1024", "--device", "cpu"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
                model = json.loads(r.read())["data"][0]["id"]
            return proc, url, model
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {proc.stderr.read()[-2000:]}")
            time.sleep(0.2)


async def sse_events(url: str, path: str, body: dict):
    """POST `body` as JSON and yield each server-sent event's data (str) as it arrives."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    payload = json.dumps(body).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
    await writer.drain()
    status = await reader.readline()
    assert b" 200 " in status, status
    chunked = False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        chunked |= line.lower().startswith(b"transfer-encoding: chunked")
    buffer = b""
    try:
        while True:
            if chunked:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    break
                data = await reader.readexactly(size + 2)  # the chunk and its CRLF
                buffer += data[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if event.startswith(b"data: "):
                    yield event[6:].decode()
    finally:
        writer.close()


async def one(url: str, model: str, i: int, max_tokens: int, stats: dict) -> None:
    body = {"model": model, "stream": True, "max_tokens": max_tokens, "seed": i,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]}
    sent, last = time.perf_counter(), None
    async for data in sse_events(url, "/v1/chat/completions", body):
        now = time.perf_counter()
        if data == "[DONE]":
            break
        event = json.loads(data)
        if event.get("usage"):
            stats["tokens"] += event["usage"]["completion_tokens"]
        if any(ch.get("delta", {}).get("content") for ch in event["choices"]):
            if last is None:
                stats["ttft"].append(now - sent)
            else:
                stats["itl"].append(now - last)
            last = now


async def level(url: str, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    stats = {"tokens": 0, "ttft": [], "itl": []}
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await one(url, model, queue.get_nowait(), max_tokens, stats)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    stats["wall"] = time.perf_counter() - start
    return stats


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def bench(name: str, run: Path, levels: list[int], requests: int, max_tokens: int, threads: int) -> None:
    proc, url, model = start_server(run, max(levels), threads)
    try:
        asyncio.run(level(url, model, 2, 4, max_tokens))  # warm-up
        print(f"\n{name} ({model}): {requests} requests per row, up to {max_tokens} new tokens each")
        print("| clients | wall s | tokens | tokens/s | × one at a time | TTFT p50 / p95 ms | ITL p50 / p95 ms |")
        print("|---|---|---|---|---|---|---|")
        base = None
        for clients in levels:
            s = asyncio.run(level(url, model, clients, requests, max_tokens))
            rate = s["tokens"] / s["wall"]
            base = base or rate
            print(f"| {clients} | {s['wall']:.1f} | {s['tokens']} | {rate:,.0f} | {rate / base:.2f} | "
                  f"{pct(s['ttft'], 50) * 1e3:.0f} / {pct(s['ttft'], 95) * 1e3:.0f} | "
                  f"{pct(s['itl'], 50) * 1e3:.1f} / {pct(s['itl'], 95) * 1e3:.1f} |", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/quickstart/chat", help="the chat run to serve (the quickstart's model)")
    ap.add_argument("--no-124m", action="store_true", help="skip the GPT-2-124M-shaped random model")
    ap.add_argument("--levels", default="1,4,16,32", help="concurrent clients per row; the first is the baseline")
    ap.add_argument("--requests", type=int, default=64, help="requests per row (the quickstart model)")
    ap.add_argument("--requests-124m", type=int, default=32, help="requests per row (the 124M model)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    import torch

    print(f"{time.strftime('%Y-%m-%d')}; torch {torch.__version__}; {cpu_description()}")
    run = Path(args.run)
    if run.exists():
        bench("quickstart chat model", run, levels, args.requests, args.max_tokens, args.threads)
    else:
        print(f"\n{run} does not exist (run `owngpt quickstart` first): skipped")
    if not args.no_124m:
        with tempfile.TemporaryDirectory() as tmp:
            big = random_124m_run(Path(tmp) / "gpt2-124m-random", str(run) if run.exists() else None)
            bench("GPT-2-124M-shaped, random weights", big, levels, args.requests_124m, args.max_tokens, args.threads)


if __name__ == "__main__":
    main()
