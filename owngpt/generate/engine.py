"""The generation engine: prompts fitted to the context, the KV-cache runner, sampling and beam search.

Sampling: each step runs the one logits chain (owngpt/generate/processors.py) and draws from a torch.Generator
seeded with `seed` (the global RNG is never touched). The same seed, settings and batch give the same text; the
rows of a batch draw from that one generator in turn, so a prompt's text also depends on the other prompts of
its batch (and their order): alone, or in another batch, it gets other draws.
Beam search (num_beams > 1) keeps the num_beams best partial sequences by summed log-probability, scores a
finished one as sum / length ** length_penalty (as Hugging Face), and stops as soon as num_beams sequences
have finished ("early stopping"); it is deterministic: temperature, top-k, top-p and seed do not apply. It
returns the num_return best distinct finished sequences, best first (Hugging Face's num_return_sequences). Each step
looks at candidates best first until num_beams of them continue (a stop among the num_beams best finishes a
sequence, one ranked lower is skipped, as in Hugging Face), so stop ids never leave fewer beams running. Unlike
Hugging Face, which applies the repetition penalty and the n-gram ban to log-probabilities without renormalising,
beam scores here are the log-softmax of the penalised logits (renormalised after the ban), so with those settings
the chosen sequence can differ from Hugging Face's.

Both run on owngpt/generate/runner.py (prompts fitted to the context, the KV cache, left padding); sampling is
THE sampling loop of owngpt/generate/batch.py, run here for one group of rows from start to end. A row that
finishes (stop id, stop string, its own token budget) leaves the batch and the cache, so a short prompt in a batch
gets as many new tokens as it would alone. `use_cache=False` reruns the whole sequence every step: the reference
for tests and the benchmark.

Not handled: sampling inside beam search, speculative decoding, sliding-window (StreamingLLM) generation.
"""

from __future__ import annotations

from typing import Callable, Collection, Iterator

import torch
import torch.nn.functional as F

from owngpt.errors import OwnGPTError
from owngpt.generate.batch import DecodeBatch, RowEnd
from owngpt.generate.moderation import ContentFilter
from owngpt.generate.processors import LogitsChain, never_sampled
from owngpt.generate.runner import (  # noqa: F401 - fit_prompt, device_of and inference are this module's API too
    Runner,
    device_of,
    fit_prompt,
    inference,
    prepare_prompts,
    step_limit,
)
from owngpt.generate.settings import GenerationConfig
from owngpt.generate.text import has_stop, text_of


def _beam_search(model, prompt: list[int], cfg: GenerationConfig, stop_ids: Collection[int], tokenizer,
                 use_cache: bool, never: torch.Tensor | None) -> list[list[int]]:
    """The cfg.num_return best distinct finished beams, best first, by sum(log p) / length ** length_penalty
    (length: generated tokens, the stop token included); ties keep the one that finished first. Finishes as soon
    as num_beams sequences ended (stop id or stop string), or at the limit. Always cfg.num_return lists: should
    fewer sequences have finished (no room for a new token, or fewer allowed tokens than beams), empty ones
    fill the rest."""
    nb, stops = cfg.num_beams, {int(s) for s in stop_ids}
    runner = Runner(model, use_cache, capacity=len(prompt) + cfg.max_new_tokens)
    device = runner.device
    limit = step_limit(model, len(prompt), cfg)
    if limit == 0:
        return [[] for _ in range(cfg.num_return)]
    runner.join([prompt])
    logits = runner.step(torch.tensor(prompt[-1:], device=device))  # (1, V)
    beams: list[list[int]] = [[]]
    scores = torch.zeros(1, device=device)  # (beams,) summed log-probabilities
    chain = LogitsChain(cfg, [prompt], model.cfg.vocab_size, never, device)
    finished: list[tuple[float, list[int]]] = []

    def score(total: float, length: int) -> float:
        return total / (max(1, length) ** cfg.length_penalty)

    for step in range(limit):
        logits = chain(logits)
        V = logits.size(-1)
        cand = scores[:, None] + F.log_softmax(logits, dim=-1)  # (beams, V)
        chosen: list[tuple[float, int, int]] = []  # (summed log p, parent beam, token)
        for rank, (s, f) in enumerate(_best_first(cand.view(-1), max(2, 1 + len(stops)) * nb)):
            if s == float("-inf"):
                break
            parent, t = divmod(f, V)
            seq = beams[parent] + [t]
            ends = t in stops
            if not ends and tokenizer is not None and cfg.stop:
                ends = has_stop(tokenizer, seq, cfg.stop)
            if ends:
                if rank < nb:  # as HF: a stop ranked below the beam width does not count
                    finished.append((score(s, len(seq)), seq[:-1] if t in stops else seq))
                continue
            chosen.append((s, parent, t))
            if len(chosen) == nb:
                break
        if step == limit - 1:  # every beam ends with this token: it competes with the stops found above (as in HF)
            finished += [(score(s, len(beams[p]) + 1), beams[p] + [t]) for s, p, t in chosen]
            break
        if len(finished) >= nb or not chosen:
            break
        index = torch.tensor([p for _, p, _ in chosen], device=device)
        tokens = torch.tensor([t for _, _, t in chosen], device=device)
        beams = [beams[p] + [t] for _, p, t in chosen]
        scores = torch.tensor([s for s, _, _ in chosen], device=device)
        chain.select([p for _, p, _ in chosen])
        chain.advance(tokens)
        runner.keep(index.tolist())
        logits = runner.step(tokens)
    ranked: list[list[int]] = []
    for _, seq in sorted(finished, key=lambda x: x[0], reverse=True):  # stable: the first of equals first
        if seq not in ranked:
            ranked.append(seq)
        if len(ranked) == cfg.num_return:
            break
    return ranked + [[] for _ in range(cfg.num_return - len(ranked))]


def _best_first(values: torch.Tensor, k: int) -> Iterator[tuple[float, int]]:
    """(value, index) pairs of a flat tensor, largest first. Only the k largest are found up front (Hugging Face's
    (1 + stop ids) * num_beams is enough to keep num_beams running past stop ids); the rest follow, sorted, only
    if the caller reads on (stop strings can end any number of candidates)."""
    top, index = values.topk(min(k, values.numel()))
    yield from zip(top.tolist(), index.tolist())
    if k < values.numel():
        given = set(index.tolist())
        top, index = values.sort(descending=True)
        yield from ((v, i) for v, i in zip(top.tolist(), index.tolist()) if i not in given)


def generate_ids(model, prompts: list[list[int]], cfg: GenerationConfig, *, stop_ids: Collection[int] = (),
                 tokenizer=None, use_cache: bool = True) -> list[list[int]]:
    """The new tokens of each prompt (the prompt itself not included, the stop id not included): cfg.num_return
    lists per prompt, in prompt order (len(prompts) * num_return rows; one per prompt by default). Sampling draws
    num_return samples of each prompt (the prompt repeated in the batch); beam search gives its num_return best
    distinct finished beams, best first.

    A row ends at a stop id, at max_new_tokens, when the sequence fills the context, or (when `tokenizer`
    is given) once its text contains one of cfg.stop; its ids then run up to and including the token that
    completed the stop string (`generate_texts` cuts the text before it). With a tokenizer, ids past its
    vocabulary, <|pad|> and <|reserved_*|> are never sampled. `use_cache=False` recomputes every step
    without the KV cache. With cfg.seed, the same batch (the same prompts in the same order) and settings give
    the same ids; the rows share one generator, so a prompt sampled alone or in another batch may differ."""
    return [row.ids for row in _run(model, tokenizer, prompts, cfg, stop_ids, use_cache)]


def _run(model, tokenizer, prompts: list[list[int]], cfg: GenerationConfig, stop_ids: Collection[int],
         use_cache: bool, content_filter: ContentFilter | None = None) -> list:
    """The finished rows (owngpt.generate.batch.Row: .ids, .text, .end) of `prompts`, cfg.num_return per prompt."""
    if not prompts:
        return []
    if cfg.num_beams > 1:
        return _beam_rows(model, tokenizer, prompts, cfg, stop_ids, use_cache, content_filter)
    rows = [list(p) for p in prompts for _ in range(cfg.num_return)]
    longest = max(len(p) for p in rows)
    batch = DecodeBatch(model, tokenizer, use_cache=use_cache, capacity=longest + cfg.max_new_tokens)
    group = batch.add(rows, cfg, stop_ids=stop_ids, content_filter=content_filter)
    while len(batch):
        batch.step()
    return group.rows


class _BeamRow:
    """A finished beam, shaped like a batch Row: its ids, text and end."""

    def __init__(self, ids: list[int], text: str, end: RowEnd) -> None:
        self.ids, self.text, self.end = ids, text, end


def _beam_rows(model, tokenizer, prompts, cfg, stop_ids, use_cache, content_filter) -> list[_BeamRow]:
    prompts = prepare_prompts(model, prompts, cfg, tokenizer)
    never = never_sampled(model.cfg.vocab_size, tokenizer, device_of(model))
    rows = []
    with inference(model):
        for p in prompts:
            limit = step_limit(model, len(p), cfg)
            for ids in _beam_search(model, p, cfg, stop_ids, tokenizer, use_cache, never):
                text = text_of(tokenizer, ids, cfg.stop) if tokenizer is not None else ""
                reason = "length" if len(ids) >= limit else "stop"  # a beam that used its whole budget ran out of room
                if content_filter is not None and (cut := content_filter.find(text)) is not None:
                    text, reason = text[:cut], "content_filter"
                rows.append(_BeamRow(ids, text, RowEnd(reason, len(ids))))
    return rows


class TextStream:
    """The pieces of one streamed text (an iterator of str); `end` (RowEnd: reason, tokens) once it is exhausted."""

    def __init__(self, pieces: Iterator[str], end: Callable[[], RowEnd | None]) -> None:
        self._pieces, self._end = pieces, end

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

    @property
    def end(self) -> RowEnd | None:
        return self._end()


def stream_text(model, tokenizer, prompt_ids: list[int], cfg: GenerationConfig, *, stop_ids: Collection[int] = (),
                use_cache: bool = True, content_filter: ContentFilter | None = None) -> TextStream:
    """Yield the generated text as it decodes: only complete UTF-8 characters, never a stop string (or a content-
    filter match) or the start of one; the pieces join to exactly what `generate_texts` returns. Beam search yields
    once, at the end. A bad prompt (empty, too long, ids outside the vocabulary) raises here, before anything is
    yielded; so does num_return > 1 (one stream is one text: use generate_texts for several). The stream's `end`
    says how the text ended once it is exhausted."""
    if cfg.num_return != 1:
        raise OwnGPTError(f"a stream is one text, but num_return is {cfg.num_return}: use generate_texts (or "
                          "Generator.generate) for several results of one prompt")
    if cfg.num_beams > 1:
        row = _run(model, tokenizer, [prompt_ids], cfg, stop_ids, use_cache, content_filter)[0]
        return TextStream(iter([row.text] if row.text else []), lambda: row.end)
    prompt = [list(prompt_ids)]
    batch = DecodeBatch(model, tokenizer, use_cache=use_cache, capacity=len(prompt[0]) + cfg.max_new_tokens)
    row = batch.add(prompt, cfg, stop_ids=stop_ids, content_filter=content_filter).rows[0]

    def pieces() -> Iterator[str]:
        while row.end is None:
            for piece in batch.step():
                if piece.text:
                    yield piece.text

    return TextStream(pieces(), lambda: row.end)


def generate_texts(model, tokenizer, prompts: list[list[int]], cfg: GenerationConfig, *,
                   stop_ids: Collection[int] = (), use_cache: bool = True,
                   content_filter: ContentFilter | None = None) -> list[str]:
    """The text each prompt's new tokens decode to, cut before the first stop string (or content-filter match):
    exactly the pieces `stream_text` would yield for that prompt alone, joined (with the same seed, for a batch of
    one). As generate_ids: cfg.num_return texts per prompt, in prompt order."""
    return [row.text for row in _run(model, tokenizer, prompts, cfg, stop_ids, use_cache, content_filter)]
