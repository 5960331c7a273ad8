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

KV cache: the prompt is run once (prefill) and each step then feeds one token. Batches of prompts of unequal
length are left-padded and described by a `valid` mask, so every row computes what it would alone; a row
that finishes (stop id, stop string, its own token budget) is dropped from the batch and the cache
(`KVCache.reorder`), and padding that no remaining row needs is dropped when the context fills, so a short
prompt in a batch gets as many new tokens as it would alone.
`use_cache=False` reruns the whole sequence every step: the reference for tests and the benchmark.

Context window: a prompt that fits the context is used whole; a longer one is an error (truncate="error") or
keeps its last tokens, leaving room for max_new_tokens but at most half the context (truncate="left").
Generation never slides the window: it stops cleanly when the sequence fills the context (the last token is
sampled from a full window), because a model trained on windows of block_size has never seen positions past
it. So new tokens fit only in what the prompt leaves free: a prompt of P tokens gets at most block_size - P + 1.

Not handled: sampling inside beam search, speculative decoding, sliding-window (StreamingLLM) generation.
"""

from __future__ import annotations

import contextlib
from typing import Collection, Iterator, Sequence

import torch
import torch.nn.functional as F

from owngpt.errors import OwnGPTError
from owngpt.generate.processors import LogitsChain, never_sampled, sample_next
from owngpt.generate.settings import GenerationConfig
from owngpt.generate.text import TextTracker, has_stop, text_of


def fit_prompt(ids: Sequence[int], block_size: int, cfg: GenerationConfig, *, which: str = "the prompt") -> list[int]:
    """The prompt as the model will see it. A prompt that fits the context (at most block_size tokens) is kept
    whole, whatever max_new_tokens is: generation then stops when the context is full. A longer one is an
    OwnGPTError naming both lengths (truncate="error"), or keeps its last tokens (truncate="left"): as many as
    leave room for max_new_tokens new ones, but at most half the context is given up for them."""
    ids = [int(i) for i in ids]
    if not ids:
        raise OwnGPTError(f"{which} is empty: give at least one token (generate() starts an empty text prompt "
                          "with <|endoftext|>)")
    if len(ids) <= block_size:
        return ids
    keep = block_size - min(cfg.max_new_tokens, block_size // 2)  # room for new tokens: up to half the context
    if cfg.truncate == "left":
        return ids[-max(1, keep):]
    raise OwnGPTError(
        f"{which} is {len(ids)} tokens long but the model's context is {block_size} tokens; shorten it (new tokens "
        f"fill only what the prompt leaves of the context), or pass truncate='left' (CLI: --truncate left) to keep "
        f"its last {max(1, keep)} tokens")


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def inference(model: torch.nn.Module) -> Iterator[None]:
    """eval mode (no dropout) and no autograd for the duration; the previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class _Runner:
    """Feeds a left-padded batch to the model, with a KV cache (prefill, then one token per step) or
    without one (the whole sequence every step). `keep(index)` selects rows, e.g. finished rows leave."""

    def __init__(self, model, prompts: list[list[int]], use_cache: bool, max_new_tokens: int) -> None:
        self.model, self.use_cache = model, use_cache
        device = device_of(model)
        B, L = len(prompts), max(len(p) for p in prompts)
        self.seq = torch.zeros(B, L, dtype=torch.long, device=device)  # (B, L): pads are id 0, masked out
        self.valid = torch.zeros(B, L, dtype=torch.bool, device=device)
        for i, p in enumerate(prompts):
            self.seq[i, L - len(p):] = torch.tensor(p, dtype=torch.long)
            self.valid[i, L - len(p):] = True
        self.padded = not bool(self.valid.all())
        self.prompt_len = L  # padded: the length every row has in the cache
        self.width = L  # tokens fed so far, padding included (the cache's pos)
        block = model.cfg.block_size
        self.cache = model.new_cache(B, max_len=min(block, L + max_new_tokens)) if use_cache else None

    def prefill(self) -> torch.Tensor:
        valid = self.valid if self.padded else None
        return self.model(self.seq, cache=self.cache, valid=valid)[:, -1].float()  # (B, V)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append tokens (B,) and return the next logits (B, V)."""
        if self.width == self.model.cfg.block_size:
            self._drop_shared_padding()
        self.width += 1
        if self.cache is not None:  # the cache remembers the tokens and the padding mask
            return self.model(tokens[:, None], cache=self.cache)[:, -1].float()
        self.seq = torch.cat([self.seq, tokens[:, None]], dim=1)  # (B, T+1)
        self.valid = torch.cat([self.valid, torch.ones_like(tokens, dtype=torch.bool)[:, None]], dim=1)
        valid = self.valid if self.padded else None
        return self.model(self.seq, valid=valid)[:, -1].float()

    def keep(self, index: torch.Tensor) -> None:
        self.seq, self.valid = self.seq[index], self.valid[index]
        if self.cache is not None:
            self.cache.reorder(index)

    def _drop_shared_padding(self) -> None:
        """Drop the leading columns that are padding in every row left. Once the rows with the longest prompts
        have finished, this frees context for the shorter ones; positions count real tokens only and padding
        is never attended to, so no row's result changes."""
        valid = self.valid if self.cache is None else self.cache.valid[:, : self.width]  # (b, T)
        n = int(valid.any(dim=0).long().argmax())  # the first column some row uses
        if self.cache is None:
            self.seq, self.valid = self.seq[:, n:], self.valid[:, n:]
        else:
            self.cache.drop_front(n)
        self.width -= n


def _step_limit(model, prompt_len: int, cfg: GenerationConfig) -> int:
    """New tokens possible: max_new_tokens, but the sequence fed to the model never exceeds the context."""
    return max(0, min(cfg.max_new_tokens, model.cfg.block_size - prompt_len + 1))


def _prepare(model, prompts: Sequence[Sequence[int]], cfg: GenerationConfig, tokenizer) -> list[list[int]]:
    block, V = model.cfg.block_size, model.cfg.vocab_size
    many = len(prompts) > 1
    fitted = [fit_prompt(p, block, cfg, which=f"prompt {i}" if many else "the prompt") for i, p in enumerate(prompts)]
    limit = min(V, tokenizer.vocab_size) if tokenizer is not None else V
    for i, p in enumerate(fitted):
        bad = next((t for t in p if not 0 <= t < limit), None)
        if bad is not None:
            raise OwnGPTError(f"prompt {i} holds token id {bad}, outside the vocabulary (0..{limit - 1})")
    return fitted


def _generator(cfg: GenerationConfig, device: torch.device) -> torch.Generator | None:
    if cfg.seed is None:
        return None  # the global RNG
    return torch.Generator(device=device).manual_seed(cfg.seed)


class _SampleRun:
    """Iterating yields, per step, the (row, token) pairs of the rows still running; a stop id ends its row
    without being yielded. Between steps the consumer may `end(row)` (e.g. a stop string was completed)."""

    def __init__(self, model, prompts: list[list[int]], cfg: GenerationConfig, stop_ids: Collection[int],
                 use_cache: bool, never: torch.Tensor | None) -> None:
        self.model, self.prompts, self.cfg = model, prompts, cfg
        self.stop_ids = {int(s) for s in stop_ids}
        self.use_cache, self.never = use_cache, never
        self.ended: set[int] = set()

    def end(self, row: int) -> None:
        self.ended.add(row)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        cfg, prompts = self.cfg, self.prompts
        runner = _Runner(self.model, prompts, self.use_cache, cfg.max_new_tokens)
        device = runner.seq.device
        limits = [_step_limit(self.model, len(p), cfg) for p in prompts]  # each row's own budget
        generator = _generator(cfg, device)
        active = list(range(len(prompts)))  # batch position -> original row
        chain = LogitsChain(cfg, prompts, self.model.cfg.vocab_size, self.never, device)
        logits = runner.prefill()  # (B, V)
        for step in range(max(limits)):
            tokens = sample_next(chain(logits), cfg, generator)  # (b,)
            chain.advance(tokens)
            emitted = []
            for j, t in enumerate(tokens.tolist()):
                r = active[j]
                if t in self.stop_ids:
                    self.ended.add(r)
                    continue
                emitted.append((r, t))
                if step + 1 == limits[r]:  # its budget is spent
                    self.ended.add(r)
            yield emitted
            keep = [j for j, r in enumerate(active) if r not in self.ended]
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch (and the cache)
                index = torch.tensor(keep, device=device)
                runner.keep(index)
                chain.select(keep)
                tokens = tokens[index]
                active = [active[j] for j in keep]
            logits = runner.step(tokens)


def _beam_search(model, prompt: list[int], cfg: GenerationConfig, stop_ids: Collection[int], tokenizer,
                 use_cache: bool, never: torch.Tensor | None) -> list[list[int]]:
    """The cfg.num_return best distinct finished beams, best first, by sum(log p) / length ** length_penalty
    (length: generated tokens, the stop token included); ties keep the one that finished first. Finishes as soon
    as num_beams sequences ended (stop id or stop string), or at the limit. Always cfg.num_return lists: should
    fewer sequences have finished (no room for a new token, or fewer allowed tokens than beams), empty ones
    fill the rest."""
    nb, stops = cfg.num_beams, {int(s) for s in stop_ids}
    runner = _Runner(model, [prompt], use_cache, cfg.max_new_tokens)
    device = runner.seq.device
    limit = _step_limit(model, runner.prompt_len, cfg)
    if limit == 0:
        return [[] for _ in range(cfg.num_return)]
    logits = runner.prefill()  # (1, V)
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
        runner.keep(index)
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
    if not prompts:
        return []
    prompts = _prepare(model, prompts, cfg, tokenizer)
    never = never_sampled(model.cfg.vocab_size, tokenizer, device_of(model))
    with inference(model):
        if cfg.num_beams > 1:
            return [out for p in prompts for out in _beam_search(model, p, cfg, stop_ids, tokenizer, use_cache, never)]
        prompts = [p for p in prompts for _ in range(cfg.num_return)]
        outs: list[list[int]] = [[] for _ in prompts]
        trackers = [TextTracker(tokenizer, cfg.stop) for _ in prompts] if tokenizer is not None and cfg.stop else None
        run = _SampleRun(model, prompts, cfg, stop_ids, use_cache, never)
        for emitted in run:
            for row, t in emitted:
                outs[row].append(t)
                if trackers is not None:
                    trackers[row].feed(t)
                    if trackers[row].stopped:
                        run.end(row)
        return outs


def stream_text(model, tokenizer, prompt_ids: list[int], cfg: GenerationConfig, *, stop_ids: Collection[int] = (),
                use_cache: bool = True) -> Iterator[str]:
    """Yield the generated text as it decodes: only complete UTF-8 characters, never a stop string or the
    start of one; the pieces join to exactly what `generate_texts` returns. Beam search yields once, at the end.
    A bad prompt (empty, too long, ids outside the vocabulary) raises here, before anything is yielded; so does
    num_return > 1 (one stream is one text: use generate_texts for several)."""
    if cfg.num_return != 1:
        raise OwnGPTError(f"a stream is one text, but num_return is {cfg.num_return}: use generate_texts (or "
                          "Generator.generate) for several results of one prompt")
    prompt = _prepare(model, [prompt_ids], cfg, tokenizer)[0]
    return _stream(model, tokenizer, prompt, cfg, stop_ids, use_cache)


def _stream(model, tokenizer, prompt: list[int], cfg: GenerationConfig, stop_ids: Collection[int],
            use_cache: bool) -> Iterator[str]:
    if cfg.num_beams > 1:
        ids = generate_ids(model, [prompt], cfg, stop_ids=stop_ids, tokenizer=tokenizer, use_cache=use_cache)[0]
        text = text_of(tokenizer, ids, cfg.stop)
        if text:
            yield text
        return
    never = never_sampled(model.cfg.vocab_size, tokenizer, device_of(model))
    tracker = TextTracker(tokenizer, cfg.stop)
    shown = 0
    with inference(model):
        run = _SampleRun(model, [prompt], cfg, stop_ids, use_cache, never)
        for emitted in run:
            for row, t in emitted:
                tracker.feed(t)
                if tracker.stopped:
                    run.end(row)
            end = tracker.safe_end()
            if end > shown:
                yield tracker.text[shown:end]
                shown = end
    tracker.finish()
    text = tracker.result()
    if len(text) > shown:
        yield text[shown:]


def generate_texts(model, tokenizer, prompts: list[list[int]], cfg: GenerationConfig, *,
                   stop_ids: Collection[int] = (), use_cache: bool = True) -> list[str]:
    """The text each prompt's new tokens decode to, cut before the first stop string: exactly the pieces
    `stream_text` would yield for that prompt alone, joined (with the same seed, for a batch of one). As
    generate_ids: cfg.num_return texts per prompt, in prompt order."""
    outs = generate_ids(model, prompts, cfg, stop_ids=stop_ids, tokenizer=tokenizer, use_cache=use_cache)
    return [text_of(tokenizer, out, cfg.stop) for out in outs]
