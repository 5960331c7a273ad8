"""The KV cache of generation: keys and values of the tokens seen so far, with the mask of which are real."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of the tokens seen so far, preallocated per layer: (B, n_kv_head, max_len, head_dim).

    `pos` counts the stored tokens (the same for every row; padding fills the gaps). `valid` (B, max_len)
    remembers which stored tokens are real, so that positions and masks stay right for later steps. Rows of
    different lengths are aligned on their last stored token (left padding): `append` adds rows that were
    prefilled elsewhere (continuous batching), `grow` makes room for longer rows.
    """

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.valid = torch.ones(batch_size, max_len, dtype=torch.bool, device=device)
        self.padded = False  # any False in valid[:, :pos]: decides whether a mask is needed at all
        self.pos = 0

    @property
    def batch_size(self) -> int:
        return self.valid.size(0)

    @property
    def max_len(self) -> int:
        return self.valid.size(1)

    def reset(self) -> None:
        """Forget every stored token (the buffers are kept for reuse)."""
        self.pos = 0
        self.valid.fill_(True)
        self.padded = False

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` (beam search: the surviving beams' parents); may repeat rows or change the batch size."""
        index = index.to(self.valid.device)
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]
        self.valid = self.valid.index_select(0, index)

    def grow(self, max_len: int) -> None:
        """Make room for `max_len` tokens per row (stored tokens and the mask kept)."""
        extra = max_len - self.max_len
        if extra <= 0:
            return
        pad = lambda t: torch.cat([t, t.new_zeros(*t.shape[:2], extra, t.size(3))], dim=2)  # noqa: E731
        self.k, self.v = [pad(k) for k in self.k], [pad(v) for v in self.v]
        self.valid = torch.cat([self.valid, self.valid.new_ones(self.batch_size, extra)], dim=1)

    def append(self, other: "KVCache") -> None:
        """Add `other`'s rows after this cache's rows, both aligned on their last stored token: the shorter side
        gets padding in front (masked out: positions count real tokens only), so every row computes what it
        did before. The cache grows when `other` stores more tokens than this one can hold."""
        width = max(self.pos, other.pos)
        self.grow(width)
        shift = width - self.pos
        if shift:  # this cache's tokens move right; the columns in front become padding
            for buf in (*self.k, *self.v):  # (B, n_kv_head, max_len, head_dim)
                buf[:, :, shift:width] = buf[:, :, : self.pos].clone()
            self.valid[:, shift:width] = self.valid[:, : self.pos].clone()
            self.valid[:, :shift] = False
        start = width - other.pos
        for layer in range(len(self.k)):
            for mine, theirs in ((self.k, other.k), (self.v, other.v)):
                rows = mine[layer].new_zeros(other.batch_size, *mine[layer].shape[1:])
                rows[:, :, start:width] = theirs[layer][:, :, : other.pos]
                mine[layer] = torch.cat([mine[layer], rows])
        valid = self.valid.new_ones(other.batch_size, self.max_len)
        valid[:, :start] = False
        valid[:, start:width] = other.valid[:, : other.pos]
        self.valid = torch.cat([self.valid, valid])
        self.pos = width
        self.padded = not bool(self.valid[:, :width].all())

    def drop_front(self, n: int) -> None:
        """Forget the first n stored columns and shift the rest to the front. For columns that are padding in
        every row (a batch whose longest prompts have finished): positions count real tokens only and padding
        is never attended to, so what any row computes next is unchanged, and the freed room takes new tokens."""
        if n <= 0:
            return
        kept = self.pos - n
        for buf in (*self.k, *self.v):  # (B, n_kv_head, max_len, head_dim)
            buf[:, :, :kept] = buf[:, :, n : self.pos].clone()
        self.valid[:, :kept] = self.valid[:, n : self.pos].clone()
        self.valid[:, kept:] = True
        self.pos = kept
        self.padded = not bool(self.valid[:, :kept].all())
