"""The HTTP side: the OpenAI-compatible routes, the chat page, API keys, limits and errors in OpenAI's shape.

Routes: POST /v1/chat/completions (replies through owngpt.chat.reply, THE reply path of `owngpt chat`: template,
system prompt, history fitting, reply budget, stop ids and strings), POST /v1/completions (raw continuation),
GET /v1/models, GET /health (no key), GET /metrics (Prometheus text), GET / (the chat page, owngpt/serve/static).
Generation runs on the decode thread (owngpt/serve/batching.py), never on the event loop.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from owngpt.chat.reply import Stripped, prepare_reply, reply_stop_ids, whole_prompt_length
from owngpt.errors import OwnGPTError
from owngpt.generate.api import encode_prompt
from owngpt.generate.moderation import ContentFilter
from owngpt.serve import schemas
from owngpt.serve.batching import Job, Scheduler
from owngpt.serve.config import ServeConfig
from owngpt.serve.errors import APIError, error_body
from owngpt.serve.metrics import Metrics
from owngpt.serve.models import ServedModel
from owngpt.serve.requests import ParsedRequest, chat_request, completion_request, parse_json
from owngpt.tokenizer import NO_SYSTEM_TURN, has_system_turn

log = logging.getLogger("owngpt.serve")
STATIC = Path(__file__).with_name("static")
KEYED = ("/v1/", "/metrics")  # paths that need a key when keys are set; the page, its files and /health do not
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/")
FINISH = {"cancelled": "stop"}  # OpenAI's finish_reason for a row's end (stop, length, content_filter as they are)


def static_file(name: str) -> Path | None:
    """A file of the pages (owngpt/serve/static/NAME), or None where NAME is none (a path, a dotfile, missing)."""
    path = STATIC / name
    return path if "/" not in name and not name.startswith(".") and path.is_file() else None


class _Gate:
    """ASGI middleware (not BaseHTTPMiddleware, which would hide a client's disconnect from a stream): API keys
    (constant-time comparison, with every key), the declared body size, and the requests counter."""

    def __init__(self, app, keys: list[str], max_body: int, metrics: Metrics) -> None:
        self.app, self.keys, self.max_body, self.metrics = app, [k.encode() for k in keys], max_body, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in ROUTES else "/v1/models/{id}" if path.startswith("/v1/models/") else "other"
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        refusal = self._refusal(path, headers) if scope.get("method") != "OPTIONS" else None
        if refusal is not None:
            status, message, code = refusal
            self.metrics.request(route, status)
            await _send_json(send, status, error_body(status, message, code=code),
                             {"www-authenticate": "Bearer"} if status == 401 else {})
            return
        status = [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.request(route, status[0])

    def _refusal(self, path: str, headers: dict[str, bytes]) -> tuple[int, str, str] | None:
        if self.keys and path.startswith(KEYED):
            given = headers.get("authorization", b"")
            token = given[7:].strip() if given[:7].lower() == b"bearer " else b""
            # compare with every key, always, in constant time: no timing hint of which key is near
            if not any([hmac.compare_digest(token, k) for k in self.keys]) or not token:
                return (401, "a valid API key is needed: send the header Authorization: Bearer KEY" if not token
                        else "the API key is not valid", "invalid_api_key")
        length = headers.get("content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            return 413, f"the request body is {int(length):,} bytes: at most {self.max_body:,}", "request_too_large"
        return None


async def _send_json(send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


def create_app(models: dict[str, ServedModel], cfg: ServeConfig | None = None,
               content_filter: ContentFilter | None = None) -> FastAPI:
    """The FastAPI app serving `models` ({id: ServedModel}, from models.load_served). Its decode thread starts
    now and with every start of the app, and stops when the app shuts down (`app.state.scheduler.close()`)."""
    cfg = cfg or ServeConfig()
    metrics = Metrics()
    scheduler = Scheduler(models, cfg, metrics)

    @asynccontextmanager
    async def lifespan(app):
        scheduler.open()
        yield
        scheduler.close()

    # the docs pages would load their scripts from a CDN: off (the schema stays at /openapi.json)
    app = FastAPI(title="owngpt", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.models, app.state.cfg, app.state.scheduler, app.state.metrics = models, cfg, scheduler, metrics
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(_Gate, keys=cfg.api_keys, max_body=cfg.max_body_bytes, metrics=metrics)

    def error(status: int, message: str, **kw: Any) -> JSONResponse:
        return JSONResponse(error_body(status, message, **kw), status_code=status)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException):
        message = {404: f"no route {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        return error(e.status_code, message, code="not_found" if e.status_code == 404 else None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        return error(400, f"invalid request: {first.get('msg', 'bad input')}",
                     param=".".join(str(x) for x in first.get("loc", ())[1:]) or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):  # a bug: logged, answered in OpenAI's shape
        log.exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error ({type(e).__name__}); the server log has the details")

    async def read_json(request: Request) -> dict[str, Any]:
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > cfg.max_body_bytes:
                raise APIError(413, f"the request body is over {cfg.max_body_bytes:,} bytes", code="request_too_large")
        return parse_json(bytes(raw))

    def model_of(name: str) -> ServedModel:
        if name not in models:
            raise APIError(404, f"the model {name!r} is not served here; served: {', '.join(models)}", param="model",
                           code="model_not_found")
        return models[name]

    # ------------------------------------------------------------------ the page and the plain routes

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        path = static_file(name)
        if path is None:
            raise APIError(404, f"no file {name!r}", code="not_found")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(models), "queue_depth": scheduler.queue_depth,
                "running": scheduler.rows_running}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [m.card() for m in models.values()]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str):
        return model_of(name).card()

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(scheduler.queue_depth, scheduler.rows_running),
                                 media_type="text/plain; version=0.0.4")

    # ------------------------------------------------------------------ completions

    def too_long(block: int, prompt: int, reply: int | None, what: str) -> APIError:
        ask = f" and max_tokens asks for {reply} more" if reply else ""
        return APIError(400, f"this model's context is {block} tokens; the {what} is {prompt} tokens{ask}: shorten it"
                        + (" or lower max_tokens" if reply else "") + (" (or send \"truncation\": \"auto\")"
                                                                     if what == "prompt" else ""),
                        param="messages" if what == "conversation" else "prompt", code="context_length_exceeded")

    def chat_job(served: ServedModel, req: ParsedRequest) -> Job:
        """The reply's prompt and settings through THE reply path (owngpt.chat.reply), as a Job of n rows."""
        m, block = served.reply, served.block_size
        gen = req.gen
        if not has_system_turn(m.tokenizer) and (m.system or any(x["role"] == "system" for x in req.messages)):
            raise APIError(400, NO_SYSTEM_TURN, param="messages", code="invalid_prompt")
        if req.max_tokens_given and gen.max_new_tokens >= block:
            raise APIError(400, f"max_tokens {gen.max_new_tokens}: this model's context is {block} tokens, and a reply "
                           f"can have at most {served.max_reply_tokens} (half the context: the rest holds the "
                           "conversation)", param="max_tokens", code="context_length_exceeded")
        if req.truncation == "disabled":
            if req.max_tokens_given and gen.max_new_tokens > served.max_reply_tokens:
                raise APIError(400, f"max_tokens {gen.max_new_tokens}: a reply of this model can have at most "
                               f"{served.max_reply_tokens} tokens (half its context of {block})", param="max_tokens",
                               code="context_length_exceeded")
            whole = whole_prompt_length(m.tokenizer, req.messages, m.system)
            room = block - whole
            if not req.max_tokens_given and room >= 1:
                gen = replace(gen, max_new_tokens=min(gen.max_new_tokens, room))
            budget = min(gen.max_new_tokens, served.max_reply_tokens)
            if room < budget:
                raise too_long(block, whole, budget if req.max_tokens_given else None, "conversation")
        try:
            p = prepare_reply(m.model, m.tokenizer, req.messages, gen, m.system)
        except OwnGPTError as e:  # the system prompt alone leaves no room
            raise APIError(400, str(e), param="messages", code="context_length_exceeded") from None
        if cfg.log_prompts:
            log.info("chat %s: %s", served.id, json.dumps(p.context, ensure_ascii=False))
        return Job(served.id, [p.ids] * req.n, p.cfg, reply_stop_ids(m.tokenizer), prompt_tokens=len(p.ids),
                   content_filter=content_filter)

    def completion_job(served: ServedModel, req: ParsedRequest) -> Job:
        m, block = served.reply, served.block_size
        prompts = [encode_prompt(m.tokenizer, p) for p in req.prompts]
        gen = req.gen
        if req.max_tokens_given and gen.max_new_tokens >= block:
            raise APIError(400, f"max_tokens {gen.max_new_tokens}: this model's context is {block} tokens",
                           param="max_tokens", code="context_length_exceeded")
        if req.truncation == "auto":
            gen = replace(gen, truncate="left")
        else:
            longest = max(len(p) for p in prompts)
            if not req.max_tokens_given and longest < block:
                gen = replace(gen, max_new_tokens=min(gen.max_new_tokens, block - longest))
            if longest + gen.max_new_tokens > block:
                raise too_long(block, longest, gen.max_new_tokens if req.max_tokens_given else None, "prompt")
        if cfg.log_prompts:
            log.info("completion %s: %s", served.id, json.dumps(req.prompts, ensure_ascii=False))
        rows = [p for p in prompts for _ in range(req.n)]
        return Job(served.id, rows, gen, (m.tokenizer.eot_id,), prompt_tokens=sum(map(len, prompts)),
                   content_filter=content_filter)

    async def start(request: Request, parse, make_job) -> tuple[ParsedRequest, ServedModel, Job]:
        req = parse(await read_json(request), cfg)
        served = model_of(req.model)
        job = await run_in_threadpool(make_job, served, req)  # tokenizing a long conversation takes a moment
        scheduler.submit(job)
        return req, served, job

    @app.post("/v1/chat/completions", openapi_extra=schemas.body(schemas.chat_request_schema(cfg, list(models))))
    async def chat_completions(request: Request):
        req, served, job = await start(request, chat_request, chat_job)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": served.id,
                "system_fingerprint": None}
        if req.stream:
            return _event_stream(stream(job, req, head, chat=True))
        texts, ends = await collect(job, request, strip=True)
        choices = [{"index": i, "message": {"role": "assistant", "content": t, "refusal": None}, "logprobs": None,
                    "finish_reason": _finish(e)} for i, (t, e) in enumerate(zip(texts, ends))]
        return {**head, "object": "chat.completion", "choices": choices, "usage": usage(job, ends)}

    @app.post("/v1/completions", openapi_extra=schemas.body(schemas.completion_request_schema(cfg, list(models))))
    async def completions(request: Request):
        req, served, job = await start(request, completion_request, completion_job)
        head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": served.id,
                "system_fingerprint": None}
        if req.stream:
            return _event_stream(stream(job, req, head, chat=False))
        texts, ends = await collect(job, request, strip=False)
        echoed = [p for p in req.prompts for _ in range(req.n)] if req.echo else [""] * len(texts)
        choices = [{"index": i, "text": echoed[i] + t, "logprobs": None, "finish_reason": _finish(e)}
                   for i, (t, e) in enumerate(zip(texts, ends))]
        return {**head, "object": "text_completion", "choices": choices, "usage": usage(job, ends)}

    async def collect(job: Job, request: Request, *, strip: bool) -> tuple[list[str], list]:
        """Every row's whole text and end; a client that goes away cancels the job."""
        strips = [Stripped() if strip else None for _ in range(job.rows)]
        texts, ends = [[] for _ in range(job.rows)], [None] * job.rows
        try:
            while True:
                items = await job.next(1.0)
                if items is None:
                    if await request.is_disconnected():
                        job.cancel()
                        return [], []
                    continue
                for item in items:
                    if item is None:
                        return ["".join(t) for t in texts], ends
                    if isinstance(item, APIError):
                        raise item
                    for u in item:
                        texts[u.index].append(strips[u.index].feed(u.text) if strip else u.text)
                        ends[u.index] = u.end or ends[u.index]
        finally:
            job.cancel()

    async def stream(job: Job, req: ParsedRequest, head: dict, *, chat: bool) -> AsyncIterator[str]:
        """Server-sent events as OpenAI sends them, ending in `data: [DONE]`; SSE comments keep a quiet stream
        alive. A client that goes away (Starlette cancels this generator) cancels the job."""
        kind = "chat.completion.chunk" if chat else "text_completion"
        extra = {"usage": None} if req.include_usage else {}
        strips = [Stripped() if chat else None for _ in range(job.rows)]
        ends: list = [None] * job.rows

        def event(choices: list, **more: Any) -> str:
            return "data: " + json.dumps({**head, "object": kind, "choices": choices, **extra, **more},
                                         ensure_ascii=False) + "\n\n"

        def choice(i: int, text: str | None, finish: str | None = None, role: bool = False) -> dict:
            if not chat:
                return {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}
            delta = {"role": "assistant", "content": ""} if role else ({} if text is None else {"content": text})
            return {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}

        try:
            if chat:
                yield event([choice(i, None, role=True) for i in range(job.rows)])
            elif req.echo:
                yield event([choice(i, req.prompts[i // req.n]) for i in range(job.rows)])
            done = False
            while not done:
                items = await job.next(cfg.keep_alive_s)
                if items is None:
                    yield ": keep-alive\n\n"
                    continue
                out = []  # everything that has arrived goes out in one write
                for item in items:
                    if item is None:
                        done = True
                        break
                    if isinstance(item, APIError):  # headers are sent: the error goes as an event, as OpenAI's do
                        yield "".join(out) + "data: " + json.dumps(item.body(), ensure_ascii=False) + "\n\n"
                        return
                    for u in item:
                        text = strips[u.index].feed(u.text) if chat else u.text
                        if text:
                            out.append(event([choice(u.index, text)]))
                        if u.end is not None:
                            ends[u.index] = u.end
                            out.append(event([choice(u.index, None, _finish(u.end))]))
                if out:
                    yield "".join(out)
            if req.include_usage:
                yield event([], usage=usage(job, ends))
            yield "data: [DONE]\n\n"
        finally:
            job.cancel()

    def usage(job: Job, ends: list) -> dict[str, int]:
        completion = sum(e.tokens for e in ends if e is not None)
        return {"prompt_tokens": job.prompt_tokens, "completion_tokens": completion,
                "total_tokens": job.prompt_tokens + completion}

    return app


def _finish(end) -> str | None:
    return None if end is None else FINISH.get(end.reason, end.reason)


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    # no-transform and X-Accel-Buffering: proxies must not hold the events back
    return StreamingResponse(events, media_type="text/event-stream",
                        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"})


def serve(models: dict[str, ServedModel], cfg: ServeConfig, content_filter: ContentFilter | None = None) -> None:
    """Run the app with uvicorn until interrupted (access log only with cfg.log_prompts)."""
    import uvicorn

    uvicorn.run(create_app(models, cfg, content_filter), host=cfg.host, port=cfg.port, log_level="info",
                access_log=cfg.log_prompts, timeout_graceful_shutdown=5)
