"""Logits processors: one chain (vocabulary mask -> repetition penalty -> n-gram ban) that sampling and beam search
both run, then top-k / top-p / temperature and the draw.

Per row:
  logits of the last position (fp32)
  -> vocabulary mask: ids past the tokenizer's vocabulary, <|pad|> and <|reserved_*|> are never generated
  -> repetition penalty (CTRL): a logit of a token already in the row is divided by the penalty when positive
     and multiplied by it when negative, so the token always becomes less likely (dividing a negative logit,
     as GPT2-chitchat does, would make it *more* likely)
  -> no-repeat-n-gram: tokens that would complete an n-gram already in the row (prompt included) are banned
  -> OpenAI's additive penalties on the tokens generated so far (not the prompt's): logit - frequency_penalty *
     count - presence_penalty * (count > 0); then logit_bias added (-100 bans a token, +100 all but forces it)
  -> greedy argmax (temperature 0), or temperature, top-k, top-p (nucleus) and a draw from a torch.Generator.
"""

from __future__ import annotations

from typing import Sequence

import torch

from owngpt.generate.settings import GenerationConfig


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
    """The per-row processors of one generation (vocabulary mask, repetition penalty, n-gram ban), with the state
    they keep: which tokens each row holds and its n-grams. Sampling and beam search call the same chain:
    `__call__` processes the logits of the current rows, `advance` appends each row's new token, `select` keeps
    (or, for beams, repeats) rows."""

    def __init__(self, cfg: GenerationConfig, prompts: Sequence[Sequence[int]], vocab_size: int,
                 never: torch.Tensor | None, device: torch.device) -> None:
        self.never, self.penalty, self.device = never, cfg.repetition_penalty, device
        self.seen: torch.Tensor | None = None  # (B, V) tokens present in each row
        if self.penalty != 1.0:
            self.seen = torch.zeros(len(prompts), vocab_size, dtype=torch.bool, device=device)
            for i, p in enumerate(prompts):
                self.seen[i, torch.tensor(list(p), device=device)] = True
        self.blockers = [NGramBlocker(cfg.no_repeat_ngram, p) for p in prompts] if cfg.no_repeat_ngram else None
        self.frequency, self.presence = float(cfg.frequency_penalty), float(cfg.presence_penalty)
        self.counts: torch.Tensor | None = None  # (B, V) how often each row generated each token
        if self.frequency or self.presence:
            self.counts = torch.zeros(len(prompts), vocab_size, device=device)
        self.bias: torch.Tensor | None = None  # (V,) logit_bias, ids past the vocabulary ignored
        if cfg.logit_bias:
            self.bias = torch.zeros(vocab_size, device=device)
            for i, b in cfg.logit_bias.items():
                if i < vocab_size:
                    self.bias[i] = float(b)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.never is not None:
            logits = logits.masked_fill(self.never, float("-inf"))
        if self.seen is not None:
            logits = apply_repetition_penalty(logits, self.seen, self.penalty)
        if self.blockers is not None:
            logits = _ban_ngrams(logits, self.blockers)
        if self.counts is not None:
            logits = logits - self.frequency * self.counts - self.presence * (self.counts > 0).float()
        if self.bias is not None:
            logits = logits + self.bias
        return logits

    def advance(self, tokens: torch.Tensor) -> None:
        """Append tokens (b,): one per current row."""
        if self.seen is not None:
            self.seen[torch.arange(len(tokens), device=self.device), tokens] = True
        if self.blockers is not None:
            for b, t in zip(self.blockers, tokens.tolist()):
                b.append(t)
        if self.counts is not None:
            self.counts[torch.arange(len(tokens), device=self.device), tokens] += 1

    def select(self, index: Sequence[int]) -> None:
        """Keep rows `index`, in that order (a row may appear more than once: beams that share a parent)."""
        if self.seen is not None:
            self.seen = self.seen[torch.tensor(list(index), device=self.device)]
        if self.blockers is not None:
            self.blockers = [self.blockers[i].copy() for i in index]
        if self.counts is not None:
            self.counts = self.counts[torch.tensor(list(index), device=self.device)]
