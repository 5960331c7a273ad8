"""Training batches: random (x, y) windows over token shards (pretraining) and packed conversations (SFT).

TokenBatches reads memory-mapped .bin files, resumably.

Like nanoGPT, a window may span several documents (they are separated by <|endoftext|> in the shards):
the model learns that eot starts a new, unrelated text. Shards are memory-mapped, never read into RAM;
the OS pages in only the windows we touch. A window never crosses from one shard file into the next.

The sampler's state is a torch.Generator state plus a batch counter, so a resumed run draws exactly the
batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from owngpt.data.conversations import pack_examples
from owngpt.data.shards import read_manifest
from owngpt.errors import OwnGPTError




class TokenBatches:
    """Endless random (x, y) batches of shape (batch_size, block_size) from one split's shards; y is x shifted by one."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        batch_size: int,
        block_size: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        tokenizer_hash: str | None = None,
    ) -> None:
        self.data_dir, self.split = Path(data_dir), split
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.device = seed, torch.device(device)
        manifest = read_manifest(self.data_dir)
        if tokenizer_hash is not None and manifest.get("tokenizer_hash") != tokenizer_hash:
            raise OwnGPTError(
                f"{self.data_dir}/manifest.json: shards were tokenized with tokenizer {manifest.get('tokenizer_hash')} "
                f"but this run uses tokenizer {tokenizer_hash}; re-run `owngpt prepare` with this tokenizer "
                "or train with the tokenizer in the data folder"
            )
        splits = manifest.get("splits", {})
        if split not in splits:
            raise OwnGPTError(f"{self.data_dir}/manifest.json has no {split!r} split (it has: {', '.join(splits) or 'none'})")
        dtype = np.dtype(manifest.get("dtype", "uint16")).newbyteorder("<")
        need = block_size + 1
        self.shards: list[np.memmap] = []
        for shard in splits[split].get("shards", []):
            path = self.data_dir / shard["file"]
            if not path.exists():
                raise OwnGPTError(f"{path} is listed in {self.data_dir}/manifest.json but missing; re-run `owngpt prepare`")
            if path.stat().st_size >= need * dtype.itemsize:  # shards shorter than one window cannot be sampled
                self.shards.append(np.memmap(path, dtype=dtype, mode="r"))
        self.tokens = int(sum(len(s) for s in self.shards))
        if not self.shards:
            total = splits[split].get("tokens", 0)
            raise OwnGPTError(
                f"the {split!r} split of {self.data_dir} has {total} tokens and no shard holds block_size + 1 = "
                f"{need} of them; add more text or use a smaller model.block_size"
            )
        # Window starts: shard k offers len(k) - block_size starts; a global start index maps to (shard, offset).
        starts = np.array([len(s) - block_size for s in self.shards], dtype=np.int64)
        self._cum = np.cumsum(starts)
        self.generator = torch.Generator().manual_seed(seed)
        self.batches = 0

    def skip(self) -> None:
        """Move past one batch without reading it: another process reads it (distributed training)."""
        torch.randint(int(self._cum[-1]), (self.batch_size,), generator=self.generator)
        self.batches += 1

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y: (B, T) int64 on the device."""
        picks = torch.randint(int(self._cum[-1]), (self.batch_size,), generator=self.generator).numpy()
        shard_ids = np.searchsorted(self._cum, picks, side="right")
        offsets = picks - np.concatenate(([0], self._cum[:-1]))[shard_ids]
        T = self.block_size
        rows = np.stack([self.shards[k][o : o + T + 1] for k, o in zip(shard_ids, offsets)]).astype(np.int64)
        buf = torch.from_numpy(rows)  # (B, T+1)
        x, y = buf[:, :-1], buf[:, 1:]
        self.batches += 1
        if self.device.type == "cuda":  # pinned host memory lets the copy overlap with compute
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.contiguous().to(self.device), y.contiguous().to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def reset(self) -> None:
        """Back to the first batch for this seed (validation uses the same batches every time)."""
        self.generator.manual_seed(self.seed)
        self.batches = 0

    def state_dict(self) -> dict:
        return {"rng": self.generator.get_state(), "batches": self.batches, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        _check_state(state, ("rng", "batches"), "token windows (pretraining)")
        self.generator.set_state(state["rng"])
        self.batches = int(state["batches"])


def _check_state(state: dict, keys: tuple[str, ...], what: str) -> None:
    """A saved data position must come from the same kind of batches: pretraining and SFT checkpoints differ."""
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise OwnGPTError(f"the checkpoint's data position is not one of {what}: it was written by the other "
                          "kind of run (pretraining vs chat fine-tuning); resume a run with the command that made it, "
                          "or start from its weights instead (pretrain --init-from, sft --base)")


class PackedBatches:
    """Endless shuffled (x, y) batches of packed conversations; y is -1 wherever the loss must not look.

    Targets are kept only where the next token is an assistant token (the render mask), so the model learns
    the replies and their closing <|im_end|> and nothing else. State is (epoch, cursor): resumable exactly.
    """

    def __init__(
        self,
        examples: list[tuple[list[int], list[int]]],
        block_size: int,
        batch_size: int,
        pad_id: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        shuffle: bool = True,
    ) -> None:
        if not examples:
            raise OwnGPTError("no conversations to train on")
        rows, self.truncated = pack_examples(examples, block_size + 1)
        if not rows:
            raise OwnGPTError("no conversation has an assistant reply inside the context window")
        x = torch.full((len(rows), block_size), pad_id, dtype=torch.long)
        y = torch.full((len(rows), block_size), -1, dtype=torch.long)
        for r, row in enumerate(rows):
            ids = [t for ex in row for t in ex[0]]
            mask = [m for ex in row for m in ex[1]]
            n = len(ids) - 1
            x[r, :n] = torch.tensor(ids[:-1])
            tgt = torch.tensor(ids[1:])
            keep = torch.tensor(mask[1:], dtype=torch.bool)
            y[r, :n] = torch.where(keep, tgt, torch.full_like(tgt, -1))
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(rows))
        self.seed, self.device, self.shuffle = seed, torch.device(device), shuffle
        self.epoch, self.cursor = 0, 0
        self.n_examples = sum(len(r) for r in rows)
        self.tokens_per_epoch = int((y != -1).sum())

    def __len__(self) -> int:
        return len(self.x)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(len(self.x))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.x), generator=g)

    def _advance(self) -> torch.Tensor:
        """The next batch's row indices; shuffled epochs drop their last partial batch, in-order passes end with it."""
        order = self._order()
        if self.cursor + (self.batch_size if self.shuffle else 1) > len(order):
            self.epoch, self.cursor = self.epoch + 1, 0
            order = self._order()
        idx = order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx

    def skip(self) -> None:
        """Move past one batch without reading it: another process reads it (distributed training)."""
        self._advance()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch (see _advance)."""
        idx = self._advance()
        x, y = self.x[idx], self.y[idx]
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def __iter__(self):
        while True:
            yield self.next_batch()

    @property
    def batches_per_pass(self) -> int:
        """Batches that see each row at most once: every row in order, the last batch the rest (shuffle=False),
        or whole batches of one shuffled epoch."""
        if not self.shuffle:
            return -(-len(self.x) // self.batch_size)
        return max(1, len(self.x) // self.batch_size)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        _check_state(state, ("epoch", "cursor"), "packed conversations (chat fine-tuning)")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
