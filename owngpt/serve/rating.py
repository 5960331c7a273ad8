"""The rating page's HTTP side (`owngpt rate`): the blind-rating page and its small JSON API over a rating database
(owngpt/evaluate/rating.py holds every rule; this module only speaks HTTP).

Routes:
  GET  /                      the page (owngpt/serve/static/rate.html, rate.js, rate.css; nothing from a CDN)
  GET  /api/next?rater=NAME   the item NAME is to judge now: {"item", "messages", "left", "right", "done", "total"}
                              ("item": null once NAME has judged every item)
  POST /api/judgement         {"rater", "item", "verdict": left|right|tie|both_bad, "comment"} -> {"done", "total"}
  GET  /health                {"status": "ok"}
Blind: no answer names a model or a run (the sides a rater saw are kept in the database, not sent). Mistakes are
4xx with {"error": {"message", ...}}: 400 a bad field or a missing rater, 404 an unknown item, 409 an item judged
already or never shown to that rater.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from owngpt.evaluate.rating import RatingDB, RatingError
from owngpt.serve.app import STATIC, static_file
from owngpt.serve.errors import error_body

STATUS = {"bad_request": 400, "not_found": 404, "conflict": 409, "too_large": 413}
MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store"}


def create_rating_app(db: RatingDB) -> FastAPI:
    """The FastAPI app of a rating session over `db` (every reply already in it; the caller closes it)."""
    missing = db.missing_replies()
    if missing:
        raise RatingError(f"{db.path} still lacks {sum(map(len, missing.values()))} replies: run `owngpt rate RUN... "
                          f"--prompts FILE --db {db.path}` to generate them")
    app = FastAPI(title="owngpt rating", version="1", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse(error_body(status, message), status_code=status, headers=NO_STORE)

    @app.exception_handler(RatingError)
    async def _rating_error(request: Request, e: RatingError):
        return error(STATUS.get(e.kind, 400), str(e))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException):
        message = {404: f"no route {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        return error(e.status_code, message)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "rate.html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        path = static_file(name)
        if path is None:
            return error(404, f"no file {name!r}")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/api/next")
    async def next_item(request: Request):
        rater = request.query_params.get("rater")
        item = await run_in_threadpool(db.next_item, rater)
        if item is None:
            done, total = await run_in_threadpool(db.progress, rater)
            return JSONResponse({"item": None, "done": done, "total": total}, headers=NO_STORE)
        return JSONResponse({"item": item.id, "messages": item.messages, "left": item.left, "right": item.right,
                             "done": item.done, "total": item.total}, headers=NO_STORE)

    @app.post("/api/judgement")
    async def judgement(request: Request):
        body = await _json_body(request)
        item = body.get("item")
        if isinstance(item, bool) or not isinstance(item, int):
            raise RatingError(f"item must be an item number (from /api/next), not {item!r}")
        for field in ("verdict", "comment"):
            if not isinstance(body.get(field, ""), str):
                raise RatingError(f"{field} must be text")
        done, total = await run_in_threadpool(db.judge, body.get("rater"), item, body.get("verdict", ""),
                                              body.get("comment", ""))
        return JSONResponse({"done": done, "total": total}, headers=NO_STORE)

    return app


async def _json_body(request: Request) -> dict[str, Any]:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise RatingError(f"the request body is over {MAX_BODY:,} bytes", "too_large")
    try:
        body = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RatingError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise RatingError("the request body must be a JSON object")
    return body


def serve_rating(db: RatingDB, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the rating page with uvicorn until interrupted (no access log: rater names stay out of the log)."""
    import uvicorn

    uvicorn.run(create_rating_app(db), host=host, port=port, log_level="info", access_log=False,
                timeout_graceful_shutdown=5)
