"""A tiny byte-level tokenizer with the owngpt.tokenizer contract, for shard tests that must not depend on BPE."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


class ByteTokenizer:
    """ids 0-255 are UTF-8 bytes; the specials come after them. vocab_size can be raised to test uint32 shards."""

    kind = "char"

    def __init__(self, vocab_size: int = 264) -> None:
        self.vocab_size = vocab_size
        self.eot_id = vocab_size - 8
        self.pad_id = vocab_size - 7

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"bytes-{self.vocab_size}".encode()).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", "replace")

    def save(self, directory) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "tokenizer.json").write_text(json.dumps({"vocab_size": self.vocab_size}))

    @classmethod
    def load(cls, path) -> "ByteTokenizer":
        p = Path(path)
        p = p / "tokenizer.json" if p.is_dir() else p
        return cls(json.loads(p.read_text())["vocab_size"])
