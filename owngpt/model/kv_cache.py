"""The KV cache of generation: keys and values of the tokens seen so far, with the mask of which are real."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of the tokens seen so far, preallocated per layer: (B, n_kv_head, max_len, head_dim).

    `pos` counts the stored tokens (the same for every row; padding fills the gaps). `valid` (B, max_len)
    remembers which stored tokens are real, so that positions and masks stay right for later steps.
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
