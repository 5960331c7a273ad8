"""The forward passes of generation: prompts fitted to the context, and the runner that feeds a batch of rows to
the model with a KV cache (or without one, the reference).

Rows join the runner in groups (`join`) and leave it one by one (`keep`), between steps: every row has at each step
exactly one token to feed (`step`), so a row that has just joined (its prompt's last token) and a row far into its
reply share the same forward pass. Rows of unequal length are aligned on their last token: the shorter ones are
padded on the left and described by a `valid` mask, so every row computes what it would alone (positions count
real tokens only, padding is never attended to). A joining group's prompts, all but their last token, are run once
(prefill) in a cache of their own that is then appended to the shared one.

Context window: a prompt that fits the context is used whole; a longer one is an error (truncate="error") or keeps
its last tokens, leaving room for max_new_tokens but at most half the context (truncate="left"). Generation never
slides the window: a row stops when its sequence fills the context (its last token sampled from a full window),
because a model trained on windows of block_size has never seen positions past it. So a prompt of P tokens gets
at most block_size - P + 1 new tokens (`step_limit`). When the shared width reaches the context, the leading
columns that are padding in every row are dropped, so each row keeps the room it would have alone.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from owngpt.errors import OwnGPTError
from owngpt.generate.compiled import compiled, decode_step
from owngpt.generate.gemv import one_row_products, uses_numpy
from owngpt.generate.settings import GenerationConfig


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


def prepare_prompts(model, prompts: Sequence[Sequence[int]], cfg: GenerationConfig, tokenizer) -> list[list[int]]:
    """Each prompt fitted to the context (`fit_prompt`) and checked against the vocabulary (the tokenizer's, when
    given: ids past it are refused as well as ids past the model's embedding)."""
    block, V = model.cfg.block_size, model.cfg.vocab_size
    many = len(prompts) > 1
    fitted = [fit_prompt(p, block, cfg, which=f"prompt {i}" if many else "the prompt") for i, p in enumerate(prompts)]
    limit = min(V, tokenizer.vocab_size) if tokenizer is not None else V
    for i, p in enumerate(fitted):
        bad = next((t for t in p if not 0 <= t < limit), None)
        if bad is not None:
            raise OwnGPTError(f"prompt {i} holds token id {bad}, outside the vocabulary (0..{limit - 1})")
    return fitted


def step_limit(model, prompt_len: int, cfg: GenerationConfig) -> int:
    """New tokens possible: max_new_tokens, but the sequence fed to the model never exceeds the context."""
    return max(0, min(cfg.max_new_tokens, model.cfg.block_size - prompt_len + 1))


def device_of(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are: its first parameter's device, else its first buffer's (the n-gram model is
    all buffers), else the CPU."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def inference(model: torch.nn.Module) -> Iterator[None]:
    """eval mode (no dropout) and no autograd for the duration; the previous mode is restored. A model already in
    eval mode is left alone: every decode step enters this, and eval()/train() walk every submodule."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _left_padded(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(seq, valid), both (B, L): the rows right-aligned, id 0 and valid False on the padding in front."""
    B, L = len(rows), max((len(r) for r in rows), default=0)
    seq = torch.zeros(B, L, dtype=torch.long, device=device)
    valid = torch.zeros(B, L, dtype=torch.bool, device=device)
    for i, r in enumerate(rows):
        if r:
            seq[i, L - len(r):] = torch.tensor(list(r), dtype=torch.long)
            valid[i, L - len(r):] = True
    return seq, valid


class Runner:
    """Feeds the rows of a batch to the model, one token per row per step, with a KV cache or (use_cache=False,
    the reference) rerunning the whole sequence every step. A model without `new_cache` (the n-gram, LSTM and
    encoder-decoder baselines, an ensemble) always runs the reference way: its forward takes `(ids, valid=...)` and
    must ignore the left padding `valid` marks. Rows `join` in groups and leave through `keep`.
    `capacity` is the KV cache's first length (default: what the first rows need, at least FIRST_CAPACITY); it
    doubles, up to the context, when a row needs more. Joins and leaves copy the cache, so a cache only as long
    as the rows need keeps them cheap."""

    FIRST_CAPACITY = 64

    def __init__(self, model, use_cache: bool = True, capacity: int | None = None) -> None:
        self.model, self.use_cache = model, use_cache and hasattr(model, "new_cache")
        self.device = device_of(model)
        self.block = model.cfg.block_size
        self.capacity = min(self.block, capacity or self.FIRST_CAPACITY)
        self.compiled_rows = self.use_cache and self.device.type == "cpu" and compiled(model)  # compiled.py
        self.numpy_rows = self.use_cache and not self.compiled_rows and uses_numpy(model, self.device)  # gemv.py
        self._empty()

    def _empty(self) -> None:
        self.seq = torch.zeros(0, 0, dtype=torch.long, device=self.device)  # (B, W): without a cache only
        self.valid = torch.zeros(0, 0, dtype=torch.bool, device=self.device)  # (B, W): without a cache only
        self.cache = None
        self.width = 0  # columns every row has (padding included): the cache's pos

    def join(self, prompts: Sequence[Sequence[int]]) -> None:
        """Add one row per prompt (in order, after the rows already here): all of each prompt but its last token
        is run now; the last token is the row's first to feed (`step`)."""
        prefixes = [list(p[:-1]) for p in prompts]
        seq, valid = _left_padded(prefixes, self.device)
        if not self.use_cache:
            self._join_plain(seq, valid)
            return
        width = seq.size(1)
        first = self.cache is None
        cache = self.model.new_cache(len(prompts), max_len=max(width + 1, self.capacity if first else width + 1))
        if width:
            self.model(seq, cache=cache, valid=valid if not bool(valid.all()) else None)
        if first:
            self.cache, self.width = cache, width
            return
        self.cache.append(cache)
        self.width = self.cache.pos

    def _join_plain(self, seq: torch.Tensor, valid: torch.Tensor) -> None:
        width = max(self.width, seq.size(1))
        mine = (_shift(self.seq, width), _shift(self.valid, width))
        theirs = (_shift(seq, width), _shift(valid, width))
        self.seq, self.valid = torch.cat([mine[0], theirs[0]]), torch.cat([mine[1], theirs[1]])
        self.width = width

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed each row its token (B,) and return the next-token logits (B, V), fp32."""
        if self.width >= self.block or (self.cache is not None and self.width >= self._cache_len()):
            self._make_room()
        self.width += 1
        if self.cache is not None:  # the cache remembers the tokens and the padding mask
            if self.compiled_rows and tokens.size(0) == 1:
                return decode_step(self.model, tokens[:, None], self.cache)[:, -1].float()
            with one_row_products(self.numpy_rows and tokens.size(0) == 1):  # batch 1: the faster sgemv (gemv.py)
                return self.model(tokens[:, None], cache=self.cache)[:, -1].float()
        self.seq = torch.cat([self.seq, tokens[:, None]], dim=1)  # (B, W+1)
        self.valid = torch.cat([self.valid, torch.ones_like(tokens, dtype=torch.bool)[:, None]], dim=1)
        valid = None if bool(self.valid.all()) else self.valid
        return self.model(self.seq, valid=valid)[:, -1].float()

    def keep(self, index: Sequence[int]) -> None:
        """Keep rows `index`, in that order (beam search repeats rows); an empty index empties the runner."""
        if not len(index):
            self._empty()
            return
        index = torch.as_tensor(list(index), dtype=torch.long, device=self.device)
        if self.cache is None:
            self.seq, self.valid = self.seq[index], self.valid[index]
        else:
            self.cache.reorder(index)
        self._drop_shared_padding()

    def _cache_len(self) -> int:
        return getattr(self.cache, "max_len", self.block)

    def _make_room(self) -> None:
        """The next token does not fit: grow the cache up to the context, else drop the padding no row needs."""
        if self.width < self.block:
            self.cache.grow(min(self.block, 2 * self._cache_len()))
            return
        self._drop_shared_padding()
        if self.width >= self.block:
            raise OwnGPTError(f"internal: no room left in the context of {self.block} tokens for the next token")

    def _drop_shared_padding(self) -> None:
        """Drop the leading columns that are padding in every row left. Once the rows with the longest prompts
        have finished, this frees context for the shorter ones; positions count real tokens only and padding
        is never attended to, so no row's result changes."""
        valid = self.valid if self.cache is None else getattr(self.cache, "valid", None)
        if valid is None or not self.width:  # a model's own cache that keeps no padding mask: nothing to drop
            return
        used = valid[:, : self.width].any(dim=0)  # (W,) columns some row uses
        n = int(used.long().argmax()) if bool(used.any()) else self.width  # the first one used
        if not n:
            return
        if self.cache is None:
            self.seq, self.valid = self.seq[:, n:], self.valid[:, n:]
        else:
            self.cache.drop_front(n)
        self.width -= n


def _shift(t: torch.Tensor, width: int) -> torch.Tensor:
    """(B, W) -> (B, width): right-aligned, zeros (padding, or id 0) in front."""
    return torch.cat([t.new_zeros(t.size(0), width - t.size(1)), t], dim=1)
