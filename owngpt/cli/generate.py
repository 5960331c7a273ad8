"""`owngpt generate`: continue text prompts with a trained model (streamed for one prompt, batched for several)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from owngpt.cli import app, options
from owngpt.generate.settings import GenerationConfig

DEFAULTS = GenerationConfig()  # raw continuation: temperature 1, no filtering


@app.command(help="Generate text from a checkpoint. One prompt streams to the terminal as it decodes; several "
             "prompts (or --num-samples > 1, or --beams > 1) run as one batch and print each result. "
             "No prompt: sample from scratch (start at <|endoftext|>).")
def generate(
    checkpoint: str = typer.Argument(..., help="A run folder (its best, else latest checkpoint) or a checkpoint folder."),
    prompts: Optional[List[str]] = typer.Argument(None, help="Prompt texts; several prompts generate as one batch."),
    prompt_file: List[Path] = typer.Option([], "--prompt-file", help="Read a prompt from this file (the whole file is one prompt; '-' = stdin); repeatable."),
    max_new_tokens: int = options.max_new_tokens(DEFAULTS.max_new_tokens, "per sample"),
    temperature: float = options.temperature(DEFAULTS.temperature),
    top_k: int = options.top_k(DEFAULTS.top_k),
    top_p: float = options.top_p(DEFAULTS.top_p),
    repetition_penalty: float = options.repetition_penalty(DEFAULTS.repetition_penalty),
    no_repeat_ngram: int = typer.Option(0, "--no-repeat-ngram", help="Never repeat an n-gram of this size (prompt included); 0 = off."),
    beams: int = typer.Option(1, "--beams", help="Beam search with this many beams (deterministic; ignores temperature/top-k/top-p); 1 = off."),
    length_penalty: float = typer.Option(1.0, "--length-penalty", help="Beam search: score = log p / length ** this; > 1 favours longer, < 1 shorter outputs."),
    stop: List[str] = typer.Option([], "--stop", help="Stop when the text contains this string (cut before it); repeatable. '\\n' means a newline."),
    stop_eot: bool = typer.Option(True, "--stop-eot/--no-stop-eot", help="Stop at <|endoftext|> and <|im_end|> (end of a document / of a reply)."),
    seed: Optional[int] = options.seed("Random seed (0 to 2**64 - 1): the same seed, settings and prompts (the whole batch, in order) give the same text."),
    num_samples: int = typer.Option(1, "--num-samples", "-n", help="Samples per prompt; with --beams, the N best distinct beams (N <= --beams), best first."),
    truncate: str = typer.Option("error", "--truncate", help="A prompt longer than the context: 'error' (say so) or 'left' (keep its last tokens, leaving room for --max-new-tokens but giving up at most half the context). A prompt that fits is never cut."),
    adapter: Optional[str] = options.adapter(),
    ensemble: List[str] = options.ensemble(),
    device: str = options.device(),
    dtype: str = options.dtype(),
    compile: bool = options.compile_decoding(),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print a single prompt's text at the end instead of streaming it."),
    echo: bool = typer.Option(True, "--echo/--no-echo", help="Print the prompt before its continuation."),
) -> None:
    import owngpt
    from owngpt.errors import OwnGPTError

    texts = list(prompts or []) + [_read_prompt(p) for p in prompt_file]
    if not texts:
        texts = [""]
    if num_samples < 1:
        raise OwnGPTError(f"--num-samples must be at least 1, not {num_samples}")
    if beams > 1 and num_samples > beams:  # beam search is deterministic: repeating it would only repeat its text
        raise OwnGPTError(f"--num-samples {num_samples} with --beams {beams}: beam search keeps {beams} beams, so at "
                          f"most {beams} distinct results")
    options.announce_compile(compile)
    loaded = owngpt.load(checkpoint, adapter=adapter, device=device, dtype=dtype, ensemble=ensemble, compile=compile)
    tok = loaded.tokenizer
    if tok is None:
        raise OwnGPTError(f"checkpoint {checkpoint} carries no tokenizer folder; it cannot turn text into tokens")
    settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    repetition_penalty=repetition_penalty, no_repeat_ngram=no_repeat_ngram, num_beams=beams,
                    length_penalty=length_penalty, stop=[_unescape(s) for s in stop], seed=seed, truncate=truncate,
                    num_return=num_samples)
    stop_ids = (tok.eot_id, tok.im_end_id) if stop_eot else ()
    started = time.perf_counter()
    if len(texts) == 1 and num_samples == 1 and not no_stream:
        pieces = loaded.stream(texts[0], stop_ids=stop_ids, **settings)  # checks settings and prompt first
        if echo:
            typer.echo(texts[0], nl=False)
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        typer.echo()
    else:
        outs = loaded.generate(texts, stop_ids=stop_ids, **settings)  # num_samples per prompt, in prompt order
        batch = [t for t in texts for _ in range(num_samples)]
        kind = "beam" if beams > 1 else "sample"  # beams: the best distinct finished ones, best first
        for i, (prompt, out) in enumerate(zip(batch, outs)):
            if len(batch) > 1:
                label = f"prompt {i // num_samples + 1}" + (f", {kind} {i % num_samples + 1}" if num_samples > 1 else "")
                typer.secho(f"--- {label} ---", dim=True)
            typer.echo((prompt if echo else "") + out)
    describe = getattr(loaded.model, "describe", None)
    typer.secho(f"({time.perf_counter() - started:.1f}s, {describe() if describe else type(loaded.model).__name__})",
                dim=True, err=True)


def _read_prompt(path: Path) -> str:
    from owngpt.errors import OwnGPTError

    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OwnGPTError(f"--prompt-file {path}: cannot read it as UTF-8 text ({e})") from None


def _unescape(text: str) -> str:
    """'\\n' and '\\t' typed on a command line mean a newline and a tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")
