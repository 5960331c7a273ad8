"""Logits processors and the draw: one chain that sampling and beam search both run, with per-row settings so that
rows of different requests (each with its own GenerationConfig) are processed and drawn in one pass.

Per row:
  logits of the last position (fp32)
  -> vocabulary mask: ids past the tokenizer's vocabulary, <|pad|> and <|reserved_*|> are never generated
  -> repetition penalty (CTRL): a logit of a token already in the row is divided by the penalty when positive
     and multiplied by it when negative, so the token always becomes less likely (dividing a negative logit,
     as GPT2-chitchat does, would make it *more* likely)
  -> no-repeat-n-gram: tokens that would complete an n-gram already in the row (prompt included) are banned
  -> OpenAI's additive penalties on the tokens generated so far (not the prompt's): logit - frequency_penalty *
     count - presence_penalty * (count > 0); then logit_bias added (-100 bans a token, +100 all but forces it)
  -> greedy argmax (temperature 0), or temperature, top-k, top-p (nucleus) and a draw: the inverse of the
     distribution's cumulative sum at a uniform number in [0, 1) from the row's torch.Generator (`draw`), so a
     row's token depends only on its own logits and its own random number.
"""

from __future__ import annotations

from typing import Sequence

import torch

from owngpt.generate.settings import GenerationConfig


def _per_row(value, logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A setting as a (B,) tensor: a number for every row, or one per row already."""
    if isinstance(value, torch.Tensor):
        return value.to(device=logits.device, dtype=dtype)
    return torch.full((logits.size(0),), value, dtype=dtype, device=logits.device)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty) -> torch.Tensor:
    """CTRL's penalty on tokens already present (`seen` (B, V) bool): positive logits / penalty, negative
    logits * penalty, so a penalty > 1 always lowers the token's probability relative to the others. `penalty`
    is a number or one per row (B,); 1 = off."""
    if not isinstance(penalty, torch.Tensor) and penalty == 1.0:
        return logits
    p = _per_row(penalty, logits, logits.dtype)[:, None]  # (B, 1)
    penalised = torch.where(logits > 0, logits / p, logits * p)  # (B, V)
    return torch.where(seen, penalised, logits)


def apply_top_k(logits: torch.Tensor, k) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value are kept too), -inf elsewhere; `k` is a number
    or one per row; 0 (or k >= V) = off."""
    V = logits.size(-1)
    k = _per_row(k, logits, torch.long)
    on = (k > 0) & (k < V)
    if not bool(on.any()):
        return logits
    most = int(k[on].max())
    top = torch.topk(logits, most, dim=-1).values  # (B, most), largest first
    kth = top.gather(1, (k.clamp(1, most) - 1)[:, None])  # (B, 1)
    return logits.masked_fill(on[:, None] & (logits < kth), float("-inf"))


def apply_top_p(logits: torch.Tensor, p) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely tokens whose probability reaches p (always at least one); `p` is
    a number or one per row; 1 = off."""
    p = _per_row(p, logits, logits.dtype)
    on = p < 1.0
    if not bool(on.any()):
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
    drop_sorted = on[:, None] & (before >= p[:, None])  # the first token has before == 0 < p: never dropped
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def draw(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row (B,) from processed logits (B, V): the first token whose cumulative probability passes
    uniforms (B,) in [0, 1). Tokens of probability 0 (-inf logits) are never drawn."""
    probs = logits.softmax(dim=-1)  # (B, V)
    cdf = probs.cumsum(dim=-1)
    at = (uniforms.to(cdf.dtype) * cdf[:, -1])[:, None]  # (B, 1)
    index = torch.searchsorted(cdf, at, right=True).squeeze(1)  # the first cdf > at
    last = probs.size(-1) - 1 - (probs > 0).flip(-1).long().argmax(dim=-1)  # rounding never reaches past it
    return torch.minimum(index, last)


def sample(logits: torch.Tensor, temperature, top_k, top_p, uniforms: torch.Tensor) -> torch.Tensor:
    """Next token ids (B,) from processed logits (B, V) with per-row (or shared) temperature, top-k and top-p:
    argmax where the temperature is 0, else the draw at `uniforms` (B,)."""
    t = _per_row(temperature, logits, logits.dtype)
    greedy = t == 0
    if bool(greedy.all()):
        return logits.argmax(dim=-1)
    scaled = logits / torch.where(greedy, torch.ones_like(t), t)[:, None]
    drawn = draw(apply_top_p(apply_top_k(scaled, top_k), top_p), uniforms)
    return torch.where(greedy, logits.argmax(dim=-1), drawn) if bool(greedy.any()) else drawn


def uniforms_for(rows: int, cfg: GenerationConfig, generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """The random numbers `rows` rows of one generation draw at one step: from `generator` (the global RNG when
    None); none are drawn for greedy decoding."""
    if cfg.temperature == 0:
        return torch.zeros(rows, device=device)
    return torch.rand(rows, generator=generator, device=device)


def sample_next(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Next token ids (B,) from processed logits (B, V), every row with `cfg`: argmax at temperature 0, else a seeded
    draw (one uniform number per row from `generator`)."""
    uniforms = uniforms_for(logits.size(0), cfg, generator, logits.device)
    return sample(logits, cfg.temperature, cfg.top_k, cfg.top_p, uniforms)


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


def _ban_ngrams(logits: torch.Tensor, blockers: Sequence[NGramBlocker | None]) -> torch.Tensor:
    rows, cols = [], []
    V = logits.size(-1)
    for j, blocker in enumerate(blockers):
        if blocker is None:
            continue
        banned = [t for t in blocker.banned() if t < V]
        if len(banned) < V:  # never ban a whole row: it would leave nothing to pick
            rows += [j] * len(banned)
            cols += banned
    if rows:
        logits = logits.clone()
        logits[torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)] = float("-inf")
    return logits


def never_sampled(vocab_size: int, tokenizer, device: torch.device) -> torch.Tensor | None:
    """(V,) bool: ids that must never be generated. With a tokenizer: ids past its vocabulary (a model's
    embedding may be padded, e.g. to 50304) and the specials that never occur in training data (<|pad|>,
    <|reserved_*|>); <|endoftext|>, <|im_start|> and <|im_end|> stay (they end documents and turns)."""
    if tokenizer is None:
        return None
    V = vocab_size
    never = torch.zeros(V, dtype=torch.bool, device=device)
    never[min(V, tokenizer.vocab_size):] = True
    for name, i in getattr(tokenizer, "special_ids", {}).items():
        if (name == "<|pad|>" or name.startswith("<|reserved")) and i < V:
            never[i] = True
    return never if bool(never.any()) else None


class LogitsChain:
    """The processors of a batch of rows and the state they keep (which tokens each row holds, its n-grams, how
    often it generated each token), with each row's own settings, so rows of different generations share one pass.
    Sampling and beam search call the same chain: `__call__` processes the current rows' logits, `sample` draws
    their next tokens, `advance` appends them, `select` keeps (or, for beams, repeats) rows, `extend` adds the rows
    of another chain (continuous batching)."""

    def __init__(self, cfg: GenerationConfig, prompts: Sequence[Sequence[int]], vocab_size: int,
                 never: torch.Tensor | None, device: torch.device) -> None:
        B, V = len(prompts), vocab_size
        self.never, self.device, self.vocab_size, self.rows = never, device, V, B
        full = lambda value, dtype=torch.float32: torch.full((B,), value, dtype=dtype, device=device)  # noqa: E731
        self.temperature, self.top_k, self.top_p = full(cfg.temperature), full(cfg.top_k, torch.long), full(cfg.top_p)
        self.penalty, self.frequency, self.presence = (full(cfg.repetition_penalty), full(cfg.frequency_penalty),
                                                       full(cfg.presence_penalty))
        self.seen: torch.Tensor | None = None  # (B, V) tokens present in each row (repetition penalty)
        if cfg.repetition_penalty != 1.0:
            self.seen = torch.zeros(B, V, dtype=torch.bool, device=device)
            for i, p in enumerate(prompts):
                self.seen[i, torch.tensor(list(p), device=device)] = True
        self.blockers: list[NGramBlocker | None] | None = (
            [NGramBlocker(cfg.no_repeat_ngram, p) for p in prompts] if cfg.no_repeat_ngram else None)
        self.counts: torch.Tensor | None = None  # (B, V) how often each row generated each token
        if cfg.frequency_penalty or cfg.presence_penalty:
            self.counts = torch.zeros(B, V, device=device)
        self.bias: torch.Tensor | None = None  # (B, V) logit_bias (ids past the vocabulary ignored)
        if cfg.logit_bias:
            self.bias = torch.zeros(B, V, device=device)
            for i, b in cfg.logit_bias.items():
                if i < V:
                    self.bias[:, i] = float(b)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.never is not None:
            logits = logits.masked_fill(self.never, float("-inf"))
        if self.seen is not None:
            logits = apply_repetition_penalty(logits, self.seen, self.penalty)
        if self.blockers is not None:
            logits = _ban_ngrams(logits, self.blockers)
        if self.counts is not None:
            logits = logits - self.frequency[:, None] * self.counts - self.presence[:, None] * (self.counts > 0).float()
        if self.bias is not None:
            logits = logits + self.bias
        return logits

    def sample(self, logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """Each row's next token from its processed logits, with its own temperature, top-k and top-p."""
        return sample(logits, self.temperature, self.top_k, self.top_p, uniforms)

    def advance(self, tokens: torch.Tensor) -> None:
        """Append each row's new token (B,) to the state."""
        if self.seen is None and self.blockers is None and self.counts is None:
            return  # no processor keeps state (plain sampling, greedy): nothing to do each step
        rows = torch.arange(len(tokens), device=self.device)
        if self.seen is not None:
            self.seen[rows, tokens] = True
        if self.blockers is not None:
            for b, t in zip(self.blockers, tokens.tolist()):
                if b is not None:
                    b.append(t)
        if self.counts is not None:
            self.counts[rows, tokens] += 1

    def select(self, index: Sequence[int]) -> None:
        """Keep rows `index`, in that order (a row may appear more than once: beams that share a parent)."""
        at = torch.tensor(list(index), dtype=torch.long, device=self.device)
        for name in ("temperature", "top_k", "top_p", "penalty", "frequency", "presence", "seen", "counts", "bias"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[at])
        if self.blockers is not None:
            self.blockers = [b.copy() if b is not None else None for b in (self.blockers[i] for i in index)]
        self.rows = len(index)

    def extend(self, other: "LogitsChain") -> None:
        """Add `other`'s rows after these (state a side lacks is the neutral one: nothing seen, no bias)."""
        for name in ("temperature", "top_k", "top_p", "penalty", "frequency", "presence"):
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))
        for name, dtype in (("seen", torch.bool), ("counts", torch.float32), ("bias", torch.float32)):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is None and theirs is None:
                continue
            blank = lambda n: torch.zeros(n, self.vocab_size, dtype=dtype, device=self.device)  # noqa: E731
            setattr(self, name, torch.cat([blank(self.rows) if mine is None else mine,
                                           blank(other.rows) if theirs is None else theirs]))
        if self.blockers is not None or other.blockers is not None:
            self.blockers = (self.blockers or [None] * self.rows) + (other.blockers or [None] * other.rows)
        self.rows += other.rows
