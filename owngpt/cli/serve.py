"""`owngpt serve`: checkpoints (and LoRA adapters) behind an OpenAI-compatible API and a browser chat page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from owngpt.cli import app, options
from owngpt.errors import OwnGPTError

KEY_ENV = "OWNGPT_API_KEY"


@app.command(help="Serve chat models over HTTP: an OpenAI-compatible API (/v1/chat/completions, /v1/completions, "
             "/v1/models) and a chat page at http://HOST:PORT/. Concurrent requests are decoded together.")
def serve(
    runs: List[str] = typer.Argument(..., help="Run folders (their best checkpoint) or checkpoint folders; each is "
                                     "served under its folder's name (the request's \"model\")."),
    adapter: List[str] = typer.Option([], "--adapter", help="NAME=DIR: a LoRA adapter (RUN/adapter of `owngpt sft "
                                      "--lora`) over the first RUN, served as NAME, sharing the base's weights; "
                                      "repeatable (one persona per adapter)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The default answers this machine "
                             "only; 0.0.0.0 answers the whole network (then set an API key)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    api_key: List[str] = typer.Option([], "--api-key", help="A key clients must send (Authorization: Bearer KEY); "
                                      f"repeatable. Also read from ${KEY_ENV} and --api-key-file."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="A file with one API key per line "
                                                "(blank lines and # comments ignored)."),
    cors_origin: List[str] = typer.Option([], "--cors-origin", help="A web origin allowed to call the API from a "
                                          "browser (e.g. http://localhost:3000); repeatable. Off by default."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt for requests that bring none "
                                         "(default: the one each model was fine-tuned with; \"\" = none)."),
    moderation: Optional[str] = options.moderation(),
    max_batch: int = typer.Option(32, "--max-batch", help="Most replies decoded together in one step."),
    queue_size: int = typer.Option(64, "--queue-size", help="Most requests waiting for a place; more get 429."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds a reply may run before it ends (finish_reason "
                                  "\"length\")."),
    log_prompts: bool = typer.Option(False, "--log-prompts", help="Log every prompt and the access log (off: "
                                     "nothing a user wrote is logged)."),
    device: str = options.device(),
    dtype: str = options.dtype(),
    compile: bool = options.compile_decoding(),
) -> None:
    try:
        from owngpt.serve.app import serve as run_server
    except ImportError as e:
        raise OwnGPTError(f"serving needs the serve extra ({e.name} is missing): pip install 'owngpt[serve]'") from None
    from owngpt.generate.gemv import asked_backend
    from owngpt.generate.moderation import load_content_filter
    from owngpt.serve.config import ServeConfig

    asked_backend()  # a bad OWNGPT_GEMV stops the server here, not every request at its first token
    from owngpt.serve.models import load_served

    keys = list(api_key) + _keys_from(api_key_file) + ([os.environ[KEY_ENV]] if os.environ.get(KEY_ENV) else [])
    cfg = ServeConfig(host=host, port=port, api_keys=keys, cors_origins=list(cors_origin), max_batch=max_batch,
                      queue_size=queue_size, request_timeout_s=timeout, log_prompts=log_prompts)
    content_filter = load_content_filter(moderation) if moderation else None
    options.announce_compile(compile)
    models = load_served(list(runs), list(adapter), device=device, system=system, dtype=dtype, compile=compile)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1") else host
    typer.echo(f"serving {', '.join(models)} at http://{shown}:{port}/ (chat page) and http://{shown}:{port}/v1 "
               f"(OpenAI API){'; API key required' if keys else ''}", err=True)
    if cfg.exposed and not keys:
        typer.secho(f"warning: listening on {host} without an API key: anyone who can reach this machine can use "
                    f"the models; set --api-key or ${KEY_ENV}", fg=typer.colors.YELLOW, err=True)
    run_server(models, cfg, content_filter)


def _keys_from(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise OwnGPTError(f"--api-key-file {path}: {e.strerror or e}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise OwnGPTError(f"--api-key-file {path} holds no key (one per line)")
    return keys
