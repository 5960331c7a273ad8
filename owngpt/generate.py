"""Text generation: the sampler, beam search, the KV-cache engine, streaming, scoring, and `owngpt.load(path)`.

Chat, `owngpt generate` and evaluation all sample through this module, so a setting means the same everywhere.

One decoding step, per row:
  logits of the last position (fp32)
  -> repetition penalty (CTRL): a logit of a token already in the row is divided by the penalty when positive
     and multiplied by it when negative, so the token always becomes less likely (dividing a negative logit,
     as GPT2-chitchat does, would make it *more* likely)
  -> no-repeat-n-gram: tokens that would complete an n-gram already in the row (prompt included) are banned
  -> greedy argmax (temperature 0), or temperature, top-k, top-p (nucleus) and a draw from a torch.Generator
     seeded with `seed` (the global RNG is never touched). The same seed, settings and batch give the same text;
     the rows of a batch draw from that one generator in turn, so a prompt's text also depends on the other
     prompts of its batch (and their order): alone, or in another batch, it gets other draws.
Beam search (num_beams > 1) keeps the num_beams best partial sequences by summed log-probability, scores a
finished one as sum / length ** length_penalty (as Hugging Face), and stops as soon as num_beams sequences
have finished ("early stopping"); it is deterministic: temperature, top-k, top-p and seed do not apply. Each step
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
Generation never slides the window: it stops cleanly when
the sequence fills the context (the last token is sampled from a full window), because a model trained on
windows of block_size has never seen positions past it. So new tokens fit only in what the prompt leaves
free: a prompt of P tokens gets at most block_size - P + 1 of them.

Stop strings are matched on the decoded text, also across token boundaries; the text is cut before the
string. Streaming (`stream_text`) decodes bytes incrementally and yields only complete UTF-8 characters, and
holds back any tail that could still become a stop string, so the concatenation of its pieces is exactly
what `generate` returns.

Not handled: sampling inside beam search, speculative decoding, sliding-window (StreamingLLM) generation.
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Collection, Iterator, Literal, Sequence

import torch
import torch.nn.functional as F

from owngpt.errors import OwnGPTError

# ----------------------------------------------------------------------------- settings

# Below this temperature, logits / temperature overflow to inf and the probabilities become NaN (1e-45 does);
# 1e-4 already samples like greedy.
MIN_TEMPERATURE = 1e-4
SEEDS = 2**64  # a seed is a 64-bit unsigned integer, as torch.Generator.manual_seed takes it


@dataclass
class GenerationConfig:
    """How to generate; the defaults sample at temperature 1 with no filtering."""

    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off; divides positive logits, multiplies negative ones
    no_repeat_ngram: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None  # 0 <= seed < 2**64; same seed, settings and batch -> same text (see the module docstring)
    truncate: Literal["error", "left"] = "error"  # prompt longer than the context

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        checks = [
            (_is_int(self.max_new_tokens) and self.max_new_tokens >= 1, "max_new_tokens must be an integer >= 1"),
            (_is_num(self.temperature) and (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature < math.inf),
             f"temperature must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE}, not {self.temperature!r}"),
            (_is_int(self.top_k) and self.top_k >= 0, "top_k must be an integer >= 0 (0 = off)"),
            (_is_num(self.top_p) and 0 < self.top_p <= 1, "top_p must be in (0, 1] (1 = off)"),
            (_is_num(self.repetition_penalty) and 0 < self.repetition_penalty < math.inf,
             "repetition_penalty must be a finite number > 0 (1 = off, 1.1-1.3 is typical)"),
            (_is_int(self.no_repeat_ngram) and self.no_repeat_ngram >= 0, "no_repeat_ngram must be an integer >= 0"),
            (_is_int(self.num_beams) and self.num_beams >= 1, "num_beams must be an integer >= 1"),
            (_is_num(self.length_penalty) and math.isfinite(self.length_penalty), "length_penalty must be a finite number"),
            (all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty strings"),
            (self.seed is None or (_is_int(self.seed) and 0 <= self.seed < SEEDS),
             f"seed must be None or an integer from 0 to 2**64 - 1, not {self.seed!r}"),
            (self.truncate in ("error", "left"), "truncate must be 'error' or 'left'"),
        ]
        for ok, message in checks:
            if not ok:
                raise OwnGPTError(f"generation setting: {message}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def make_config(base: GenerationConfig | None = None, **overrides: Any) -> GenerationConfig:
    """`base` (default GenerationConfig()) with keyword overrides; an unknown name is an error naming the nearest."""
    valid = [f.name for f in fields(GenerationConfig)]
    for key in overrides:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(valid)}"
            raise OwnGPTError(f"unknown generation setting {key!r}{hint}")
    return replace(base or GenerationConfig(), **overrides)


# ----------------------------------------------------------------------------- logits processors


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty on tokens already present (`seen` (B, V) bool): positive logits / penalty, negative
    logits * penalty, so a penalty > 1 always lowers the token's probability relative to the others."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)  # (B, V)
    return torch.where(seen, penalised, logits)


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value are kept too), -inf elsewhere."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely tokens whose probability reaches p (always at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
    drop_sorted = before >= p  # the first token has before == 0 < p: never dropped
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Next token ids (B,) from processed logits (B, V): argmax at temperature 0, else a seeded draw."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    logits = apply_top_p(apply_top_k(logits / cfg.temperature, cfg.top_k), cfg.top_p)
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class NGramBlocker:
    """The tokens that would repeat an n-gram of one row (prompt included, as Hugging Face's no_repeat_ngram)."""

    def __init__(self, n: int, tokens: Sequence[int] = ()) -> None:
        self.n = n
        self.tokens: list[int] = []
        self.next_of: dict[tuple[int, ...], set[int]] = {}  # (n-1)-gram -> tokens that followed it
        for t in tokens:
            self.append(t)

    def append(self, token: int) -> None:
        self.tokens.append(int(token))
        if len(self.tokens) >= self.n:
            gram = self.tokens[-self.n:]
            self.next_of.setdefault(tuple(gram[:-1]), set()).add(gram[-1])

    def banned(self) -> set[int]:
        if len(self.tokens) < self.n - 1:
            return set()
        prefix = tuple(self.tokens[len(self.tokens) - self.n + 1:]) if self.n > 1 else ()
        return self.next_of.get(prefix, set())

    def copy(self) -> "NGramBlocker":
        other = NGramBlocker(self.n)
        other.tokens = list(self.tokens)
        other.next_of = {k: set(v) for k, v in self.next_of.items()}
        return other


def _ban_ngrams(logits: torch.Tensor, blockers: Sequence[NGramBlocker]) -> torch.Tensor:
    rows, cols = [], []
    V = logits.size(-1)
    for j, blocker in enumerate(blockers):
        banned = [t for t in blocker.banned() if t < V]
        if len(banned) < V:  # never ban a whole row: it would leave nothing to pick
            rows += [j] * len(banned)
            cols += banned
    if rows:
        logits = logits.clone()
        logits[torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)] = float("-inf")
    return logits


# ----------------------------------------------------------------------------- prompts and the model runner


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


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _inference(model: torch.nn.Module) -> Iterator[None]:
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
        device = _device_of(model)
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


def _never_sampled(model, tokenizer) -> torch.Tensor | None:
    """(V,) bool: ids that must never be generated. With a tokenizer: ids past its vocabulary (a model's
    embedding may be padded, e.g. to 50304) and the specials that never occur in training data (<|pad|>,
    <|reserved_*|>); <|endoftext|>, <|im_start|> and <|im_end|> stay (they end documents and turns)."""
    if tokenizer is None:
        return None
    V = model.cfg.vocab_size
    never = torch.zeros(V, dtype=torch.bool, device=_device_of(model))
    never[min(V, tokenizer.vocab_size):] = True
    for name, i in getattr(tokenizer, "special_ids", {}).items():
        if (name == "<|pad|>" or name.startswith("<|reserved")) and i < V:
            never[i] = True
    return never if bool(never.any()) else None


def _mask_vocab(logits: torch.Tensor, never: torch.Tensor | None) -> torch.Tensor:
    return logits if never is None else logits.masked_fill(never, float("-inf"))


# ----------------------------------------------------------------------------- sampling engine


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
        seen = None
        if cfg.repetition_penalty != 1.0:
            seen = torch.zeros(len(prompts), self.model.cfg.vocab_size, dtype=torch.bool, device=device)  # (B, V)
            for i, p in enumerate(prompts):
                seen[i, torch.tensor(p, device=device)] = True
        blockers = [NGramBlocker(cfg.no_repeat_ngram, p) for p in prompts] if cfg.no_repeat_ngram else None
        logits = runner.prefill()  # (B, V)
        for step in range(max(limits)):
            logits = _mask_vocab(logits, self.never)
            if seen is not None:
                logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty)
            if blockers is not None:
                logits = _ban_ngrams(logits, [blockers[r] for r in active])
            tokens = sample_next(logits, cfg, generator)  # (b,)
            emitted = []
            for j, t in enumerate(tokens.tolist()):
                r = active[j]
                if t in self.stop_ids:
                    self.ended.add(r)
                    continue
                emitted.append((r, t))
                if blockers is not None:
                    blockers[r].append(t)
                if step + 1 == limits[r]:  # its budget is spent
                    self.ended.add(r)
            if seen is not None:
                seen[torch.arange(len(active), device=device), tokens] = True
            yield emitted
            keep = [j for j, r in enumerate(active) if r not in self.ended]
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch (and the cache)
                index = torch.tensor(keep, device=device)
                runner.keep(index)
                tokens = tokens[index]
                seen = seen[index] if seen is not None else None
                active = [active[j] for j in keep]
            logits = runner.step(tokens)


class _TextTracker:
    """Incremental text of one generated row: complete UTF-8 characters only, the first stop string found."""

    def __init__(self, tokenizer, stop: Sequence[str]) -> None:
        self.tokenizer, self.stop = tokenizer, list(stop)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.cut: int | None = None  # index of the earliest stop string in text
        self.longest = max((len(s) for s in self.stop), default=0)

    def feed(self, token: int) -> None:
        before = len(self.text)
        self.text += self.decoder.decode(self.tokenizer.token_bytes(token))
        self._search(before)

    def finish(self) -> None:
        before = len(self.text)
        self.text += self.decoder.decode(b"", final=True)  # an incomplete last character becomes U+FFFD
        self._search(before)

    def _search(self, before: int) -> None:
        if self.cut is not None or not self.stop or len(self.text) == before:
            return
        start = max(0, before - self.longest + 1)  # a match must end in the new text
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.cut = min(hits)

    @property
    def stopped(self) -> bool:
        return self.cut is not None

    def result(self) -> str:
        return self.text if self.cut is None else self.text[: self.cut]

    def safe_end(self) -> int:
        """How much of the text can be shown now: up to a stop string, or before a tail that may become one."""
        if self.cut is not None:
            return self.cut
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        return len(self.text) - hold


def _text_of(tokenizer, ids: Sequence[int], stop: Sequence[str]) -> str:
    tracker = _TextTracker(tokenizer, stop)
    for t in ids:
        tracker.feed(t)
        if tracker.stopped:
            break
    tracker.finish()
    return tracker.result()


# ----------------------------------------------------------------------------- beam search


def _beam_search(model, prompt: list[int], cfg: GenerationConfig, stop_ids: Collection[int], tokenizer,
                 use_cache: bool, never: torch.Tensor | None) -> list[int]:
    """The best of num_beams beams by sum(log p) / length ** length_penalty (length: generated tokens, the stop
    token included). Finishes as soon as num_beams sequences ended (stop id or stop string), or at the limit."""
    nb, stops = cfg.num_beams, {int(s) for s in stop_ids}
    runner = _Runner(model, [prompt], use_cache, cfg.max_new_tokens)
    device = runner.seq.device
    limit = _step_limit(model, runner.prompt_len, cfg)
    if limit == 0:
        return []
    logits = runner.prefill()  # (1, V)
    beams: list[list[int]] = [[]]
    scores = torch.zeros(1, device=device)  # (beams,) summed log-probabilities
    seen = None
    if cfg.repetition_penalty != 1.0:
        seen = torch.zeros(1, model.cfg.vocab_size, dtype=torch.bool, device=device)
        seen[0, torch.tensor(prompt, device=device)] = True
    blockers = [NGramBlocker(cfg.no_repeat_ngram, prompt)] if cfg.no_repeat_ngram else None
    finished: list[tuple[float, list[int]]] = []

    def score(total: float, length: int) -> float:
        return total / (max(1, length) ** cfg.length_penalty)

    for step in range(limit):
        logits = _mask_vocab(logits, never)
        if seen is not None:
            logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty)
        if blockers is not None:
            logits = _ban_ngrams(logits, blockers)
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
                ends = _has_stop(tokenizer, seq, cfg.stop)
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
        if seen is not None:
            seen = seen[index]
            seen[torch.arange(len(chosen), device=device), tokens] = True
        if blockers is not None:
            blockers = [blockers[p].copy() for _, p, _ in chosen]
            for b, (_, _, t) in zip(blockers, chosen):
                b.append(t)
        runner.keep(index)
        logits = runner.step(tokens)
    if not finished:
        return []
    return max(finished, key=lambda x: x[0])[1]  # first of equals


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


def _has_stop(tokenizer, seq: list[int], stop: Sequence[str]) -> bool:
    """Whether the text of `seq` contains a stop string (beam search checks each candidate afresh)."""
    tracker = _TextTracker(tokenizer, stop)
    for t in seq:
        tracker.feed(t)
    return tracker.stopped


# ----------------------------------------------------------------------------- public API


def generate_ids(model, prompts: list[list[int]], cfg: GenerationConfig, *, stop_ids: Collection[int] = (),
                 tokenizer=None, use_cache: bool = True) -> list[list[int]]:
    """The new tokens of each prompt (the prompt itself not included, the stop id not included).

    A row ends at a stop id, at max_new_tokens, when the sequence fills the context, or (when `tokenizer`
    is given) once its text contains one of cfg.stop; its ids then run up to and including the token that
    completed the stop string (`generate` cuts the text before it). With a tokenizer, ids past its
    vocabulary, <|pad|> and <|reserved_*|> are never sampled. `use_cache=False` recomputes every step
    without the KV cache. With cfg.seed, the same batch (the same prompts in the same order) and settings give
    the same ids; the rows share one generator, so a prompt sampled alone or in another batch may differ."""
    if not prompts:
        return []
    prompts = _prepare(model, prompts, cfg, tokenizer)
    never = _never_sampled(model, tokenizer)
    with _inference(model):
        if cfg.num_beams > 1:
            return [_beam_search(model, p, cfg, stop_ids, tokenizer, use_cache, never) for p in prompts]
        outs: list[list[int]] = [[] for _ in prompts]
        trackers = [_TextTracker(tokenizer, cfg.stop) for _ in prompts] if tokenizer is not None and cfg.stop else None
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
    start of one; the pieces join to exactly what `generate` returns. Beam search yields once, at the end.
    A bad prompt (empty, too long, ids outside the vocabulary) raises here, before anything is yielded."""
    prompt = _prepare(model, [prompt_ids], cfg, tokenizer)[0]
    return _stream(model, tokenizer, prompt, cfg, stop_ids, use_cache)


def _stream(model, tokenizer, prompt: list[int], cfg: GenerationConfig, stop_ids: Collection[int],
            use_cache: bool) -> Iterator[str]:
    if cfg.num_beams > 1:
        ids = generate_ids(model, [prompt], cfg, stop_ids=stop_ids, tokenizer=tokenizer, use_cache=use_cache)[0]
        text = _text_of(tokenizer, ids, cfg.stop)
        if text:
            yield text
        return
    never = _never_sampled(model, tokenizer)
    tracker = _TextTracker(tokenizer, cfg.stop)
    shown = 0
    with _inference(model):
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


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """A text prompt's ids; an empty prompt starts from <|endoftext|> (documents begin after one in training)."""
    return tokenizer.encode(prompt) or [tokenizer.eot_id]


def generate(model, tokenizer, prompts: list[str], cfg: GenerationConfig, *, stop_ids: Collection[int] = (),
             use_cache: bool = True) -> list[str]:
    """The continuation text of each prompt, cut before the first stop string."""
    ids = [encode_prompt(tokenizer, p) for p in prompts]
    outs = generate_ids(model, ids, cfg, stop_ids=stop_ids, tokenizer=tokenizer, use_cache=use_cache)
    return [_text_of(tokenizer, out, cfg.stop) for out in outs]


def sequence_logprob(model, ids: list[int], mask: list[int]) -> float:
    """Sum of log p(ids[i] | ids[:i]) over the positions i >= 1 where mask[i] == 1 (mask[0] has no context)."""
    return sequence_logprobs(model, [(ids, mask)])[0]


def sequence_logprobs(model, items: Sequence[tuple[Sequence[int], Sequence[int]]], *, batch_size: int = 16) -> list[float]:
    """sequence_logprob of many (ids, mask) pairs, right-padded into batches (causal attention: padding after
    a sequence cannot change it)."""
    for i, (ids, mask) in enumerate(items):
        if len(ids) != len(mask):
            raise ValueError(f"item {i}: ids and mask differ in length ({len(ids)} vs {len(mask)})")
        if len(ids) > model.cfg.block_size:
            raise OwnGPTError(f"item {i} is {len(ids)} tokens long but the model's context is "
                              f"{model.cfg.block_size} tokens; score a shorter sequence")
    device = _device_of(model)
    out: list[float] = []
    with _inference(model):
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            T = max(len(ids) for ids, _ in chunk)
            if T < 2:
                out += [0.0] * len(chunk)
                continue
            idx = torch.zeros(len(chunk), T, dtype=torch.long, device=device)  # (B, T)
            m = torch.zeros(len(chunk), T, dtype=torch.bool, device=device)
            for i, (ids, mask) in enumerate(chunk):
                idx[i, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
                m[i, : len(mask)] = torch.tensor([bool(v) for v in mask])
            logp = F.log_softmax(model(idx)[:, :-1].float(), dim=-1)  # (B, T-1, V): predicts idx[:, 1:]
            picked = logp.gather(-1, idx[:, 1:, None]).squeeze(-1)  # (B, T-1)
            out += (picked * m[:, 1:]).sum(dim=1).tolist()
    return out


# ----------------------------------------------------------------------------- a loaded model


class Generator:
    """A model with its tokenizer, ready to generate: `owngpt.load(path).generate("Once upon a time")`.

    Keyword arguments of generate/stream are GenerationConfig fields (plus stop_ids); they override `defaults`."""

    def __init__(self, model, tokenizer, meta: dict | None = None, defaults: GenerationConfig | None = None) -> None:
        self.model, self.tokenizer, self.meta = model, tokenizer, dict(meta or {})
        self.defaults = defaults or GenerationConfig()

    @property
    def device(self) -> torch.device:
        return _device_of(self.model)

    def config(self, **overrides: Any) -> GenerationConfig:
        return make_config(self.defaults, **overrides)

    def _need_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise OwnGPTError("this checkpoint carries no tokenizer, so it cannot generate text; use generate_ids "
                              "with token ids")

    def generate(self, prompt: str | list[str], *, stop_ids: Collection[int] = (), **overrides: Any) -> str | list[str]:
        """The continuation of one prompt (a str) or of each of a list of prompts (a list)."""
        self._need_tokenizer()
        single = isinstance(prompt, str)
        outs = generate(self.model, self.tokenizer, [prompt] if single else list(prompt), self.config(**overrides),
                        stop_ids=stop_ids)
        return outs[0] if single else outs

    def stream(self, prompt: str, *, stop_ids: Collection[int] = (), **overrides: Any) -> Iterator[str]:
        """The continuation of one prompt, piece by piece as it decodes."""
        self._need_tokenizer()
        cfg = self.config(**overrides)
        return stream_text(self.model, self.tokenizer, encode_prompt(self.tokenizer, prompt), cfg, stop_ids=stop_ids)

    def __repr__(self) -> str:
        return f"Generator({self.model.describe() if hasattr(self.model, 'describe') else type(self.model).__name__})"


ChatModel = Generator  # the name `owngpt.chat` and the CLI know it by


def load(path: str | Path, *, adapter: str | Path | None = None, device: str = "auto") -> Generator:
    """A checkpoint (run folder: its best, else latest; or a checkpoint folder) with its tokenizer, on `device`,
    optionally with a LoRA adapter (RUN/adapter of `owngpt sft --lora`) applied to it."""
    from owngpt.train.checkpoint import load_model
    from owngpt.train.loop import resolve_device

    if not Path(path).exists():
        raise OwnGPTError(f"checkpoint {path} does not exist: give a run folder (e.g. runs/pretrain) or a "
                          "checkpoint folder (RUN/best, RUN/checkpoints/step_0001000)")
    dev = resolve_device(device)
    model, meta, tokenizer = load_model(path, device=dev)
    if adapter is not None:
        from owngpt.model.lora import load_adapter

        load_adapter(adapter, model, meta)
        model.to(dev)
    model.eval()
    return Generator(model, tokenizer, meta)
