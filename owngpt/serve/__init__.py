"""Serving: `owngpt serve` puts checkpoints behind an OpenAI-compatible HTTP API (FastAPI + uvicorn, the `serve`
extra).

Requests flow one way: app.py (routes, keys, limits, errors in OpenAI's shape) -> requests.py (a JSON body checked
field by field into a typed request) -> worker.py (a bounded queue and one generation thread, off the event loop)
-> owngpt.chat.reply (THE reply path `owngpt chat` uses: template, system prompt, stop ids and strings) or
owngpt.generate (raw text continuation for /v1/completions). metrics.py counts what happened.
"""
