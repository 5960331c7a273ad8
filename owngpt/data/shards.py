"""Token shards: documents → token ids (parallel, in batches) → raw .bin files + manifest.json, and reading it back.

A shard is a flat array of little-endian uint16 (vocab_size <= 65536) or uint32 token ids, each document followed by
<|endoftext|>, so training memory-maps it (np.memmap) instead of loading it. Every shard is written to a `.tmp`
file, fsynced, then renamed; manifest.json is written last, the same way. A folder without a manifest, or with
shards the manifest does not list, is not a prepared folder: an interrupted run never looks complete.

Tokenization runs `tokenizer.encode_batch` on chunks of documents: the Hugging Face encoder behind a BPE tokenizer
spreads a batch over all cores in Rust. A reader thread parses the next chunk of JSONL while the current one is
being encoded (the encoder releases the GIL), so the Python side mostly overlaps with the Rust side.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from owngpt.errors import OwnGPTError
from owngpt.io import TMP_SUFFIX, atomic_write_text, commit_file, file_sha256, fsync_dir

FORMAT = 1
DEFAULT_SHARD_TOKENS = 100_000_000  # 200 MB of uint16 per shard file


def dtype_for(vocab_size: int) -> str:
    """'uint16' when every id fits in 16 bits, else 'uint32'."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete `.tmp` files left by an interrupted run anywhere under `directory`; returns what was removed."""
    removed = []
    if directory.is_dir():
        for p in sorted(directory.rglob("*" + TMP_SUFFIX)):
            if p.is_file():
                p.unlink()
                removed.append(p)
    return removed


class ShardWriter:
    """Appends token arrays to `tokens/{split}_{k:04d}.bin` files of at most `shard_tokens` tokens each."""

    def __init__(self, out_dir: Path, split: str, dtype: str, shard_tokens: int = DEFAULT_SHARD_TOKENS) -> None:
        if shard_tokens < 1:
            raise ValueError("shard_tokens must be positive")
        self.out_dir, self.split = Path(out_dir), split
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.shard_tokens = shard_tokens
        self.shards: list[dict[str, Any]] = []
        self.tokens = 0
        self._f = None
        self._sha = None
        self._n = 0
        (self.out_dir / "tokens").mkdir(parents=True, exist_ok=True)

    def _rel(self) -> str:
        return f"tokens/{self.split}_{len(self.shards):04d}.bin"

    def _open(self) -> None:
        path = self.out_dir / (self._rel() + TMP_SUFFIX)
        self._f = open(path, "wb")
        self._sha = hashlib.sha256()
        self._n = 0

    def _close(self) -> None:
        if self._f is None:
            return
        rel = self._rel()
        self._f.close()
        commit_file(self.out_dir / (rel + TMP_SUFFIX), self.out_dir / rel)
        self.shards.append({"file": rel, "tokens": self._n, "sha256": self._sha.hexdigest()})
        self._f = None

    def write(self, ids: np.ndarray) -> None:
        """Append token ids (any integer array), splitting across shard files at the size limit."""
        ids = np.asarray(ids)
        if len(ids) and int(ids.max()) > np.iinfo(self.dtype).max:
            raise OwnGPTError(f"token id {int(ids.max())} does not fit in {self.dtype.name}")
        ids = ids.astype(self.dtype, copy=False)
        while len(ids):
            if self._f is None:
                self._open()
            room = self.shard_tokens - self._n
            part, ids = ids[:room], ids[room:]
            data = part.tobytes()
            self._f.write(data)
            self._sha.update(data)
            self._n += len(part)
            self.tokens += len(part)
            if self._n >= self.shard_tokens:
                self._close()

    def close(self) -> list[dict[str, Any]]:
        """Finish the last shard; returns [{'file', 'tokens', 'sha256'}] in order."""
        if self._f is not None and self._n > 0:
            self._close()
        elif self._f is not None:  # opened but empty: leave nothing behind
            self._f.close()
            (self.out_dir / (self._rel() + TMP_SUFFIX)).unlink(missing_ok=True)
            self._f = None
        fsync_dir(self.out_dir / "tokens")
        return self.shards


def flatten_with_eot(batch: list[list[int]], eot_id: int) -> np.ndarray:
    """[[ids of doc 1], [ids of doc 2], ...] -> ids1 + [eot] + ids2 + [eot] + ... as one int64 array."""
    total = sum(map(len, batch)) + len(batch)
    eot = (eot_id,)
    return np.fromiter(itertools.chain.from_iterable(itertools.chain(ids, eot) for ids in batch), dtype=np.int64,
                       count=total)


def _prefetch(chunks: Iterator[list[str]], depth: int = 2) -> Iterator[list[str]]:
    """Produce the chunks on a background thread, `depth` ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for c in chunks:
                q.put(c)
        except BaseException as e:  # handed to the consumer, raised there
            failure.append(e)
        finally:
            q.put(done)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    while True:
        item = q.get()
        if item is done:
            break
        yield item
    t.join()
    if failure:
        raise failure[0]


def chunked(texts: Iterable[str], chunk_chars: int = 4_000_000, max_docs: int = 20_000) -> Iterator[list[str]]:
    """Group texts into lists of about `chunk_chars` characters: big enough for the encoder's threads."""
    chunk: list[str] = []
    size = 0
    for t in texts:
        chunk.append(t)
        size += len(t)
        if size >= chunk_chars or len(chunk) >= max_docs:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def tokenize_to_shards(
    tokenizer: Any,
    texts: Iterable[str],
    out_dir: str | Path,
    split: str,
    *,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    chunk_chars: int = 4_000_000,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Encode every text, append <|endoftext|> after each, write the split's shards.

    Returns the manifest entry {'documents', 'tokens', 'shards': [{'file', 'tokens', 'sha256'}]}.
    `on_chunk(documents, characters)` is called after each chunk (for progress bars).
    """
    writer = ShardWriter(Path(out_dir), split, dtype_for(tokenizer.vocab_size), shard_tokens)
    docs = 0
    try:
        for chunk in _prefetch(chunked(texts, chunk_chars)):
            ids = tokenizer.encode_batch(chunk)
            writer.write(flatten_with_eot(ids, tokenizer.eot_id))
            docs += len(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk), sum(len(t) for t in chunk))
        shards = writer.close()
    except BaseException:
        if writer._f is not None:  # leave no half-written shard behind (a .tmp is removed on the next run anyway)
            writer._f.close()
        raise
    return {"documents": docs, "tokens": writer.tokens, "shards": shards}


class ShardPipeline:
    """Tokenize documents on a background thread while the caller is still producing (cleaning) them.

    `add(split, text)` buffers texts per split; full buffers go to a thread that runs encode_batch (Rust, GIL
    released, all cores) and appends to that split's shards, so Python-side cleaning and Rust-side encoding
    overlap. `close()` returns the manifest entry of every split, as tokenize_to_shards does.
    """

    def __init__(self, tokenizer: Any, out_dir: str | Path, splits: Iterable[str], *,
                 shard_tokens: int = DEFAULT_SHARD_TOKENS, chunk_chars: int = 200_000) -> None:
        self.tok = tokenizer
        dtype = dtype_for(tokenizer.vocab_size)
        self.writers = {s: ShardWriter(Path(out_dir), s, dtype, shard_tokens) for s in splits}
        self.docs = {s: 0 for s in self.writers}
        self._buf: dict[str, list[str]] = {s: [] for s in self.writers}
        self._size = {s: 0 for s in self.writers}
        self.chunk_chars = chunk_chars
        self._q: queue.Queue = queue.Queue(maxsize=4)
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error:
                continue  # keep draining so the producer never blocks
            split, texts = item
            try:
                ids = self.tok.encode_batch(texts)
                self.writers[split].write(flatten_with_eot(ids, self.tok.eot_id))
                self.docs[split] += len(texts)
            except BaseException as e:
                self._error.append(e)

    def add(self, split: str, text: str) -> None:
        self._buf[split].append(text)
        self._size[split] += len(text)
        if self._size[split] >= self.chunk_chars:
            self._q.put((split, self._buf[split]))
            self._buf[split], self._size[split] = [], 0

    def close(self) -> dict[str, dict[str, Any]]:
        for split, texts in self._buf.items():
            if texts:
                self._q.put((split, texts))
        self._q.put(None)
        self._thread.join()
        if self._error:
            self.abort()
            raise self._error[0]
        return {s: {"documents": self.docs[s], "tokens": w.tokens, "shards": w.close()} for s, w in self.writers.items()}

    def abort(self) -> None:
        """Stop without finishing: the open shard stays a .tmp file (removed by the next run)."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        for w in self.writers.values():
            if w._f is not None:
                w._f.close()
                w._f = None


# ----------------------------------------------------------------------------- manifest


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically (always the last file a prepare run writes)."""
    atomic_write_text(Path(out_dir) / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def read_manifest(out_dir: str | Path, *, verify: bool = False) -> dict[str, Any]:
    """Load and validate DIR/manifest.json: format, dtype, every shard present with size == tokens * itemsize.

    verify=True also recomputes each shard's sha256 (reads every byte). Raises OwnGPTError saying what to do.
    """
    out_dir = Path(out_dir)
    path = out_dir / "manifest.json"
    if not path.exists():
        hint = " (its shards look incomplete: an interrupted `owngpt prepare`?)" if (out_dir / "tokens").is_dir() else ""
        raise OwnGPTError(f"{path} not found{hint}: run `owngpt prepare SOURCES --out {out_dir}`")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OwnGPTError(f"{path} is not valid JSON ({e}); re-run `owngpt prepare ... --out {out_dir} --force`") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise OwnGPTError(f"{path}: unknown manifest format {m.get('format') if isinstance(m, dict) else m!r} "
                          f"(expected {FORMAT}); re-run `owngpt prepare ... --force`")
    if m.get("dtype") not in ("uint16", "uint32"):
        raise OwnGPTError(f"{path}: dtype must be uint16 or uint32, not {m.get('dtype')!r}")
    itemsize = np.dtype(m["dtype"]).itemsize
    splits = m.get("splits")
    if not isinstance(splits, dict):
        raise OwnGPTError(f"{path}: missing 'splits'")
    for name, s in splits.items():
        total = 0
        for shard in s.get("shards", []):
            f = out_dir / shard["file"]
            if not f.is_file():
                raise OwnGPTError(f"{path}: shard {shard['file']} of split {name!r} is missing; "
                                  f"re-run `owngpt prepare ... --out {out_dir} --force`")
            size = f.stat().st_size
            if size != shard["tokens"] * itemsize:
                raise OwnGPTError(f"{f}: {size} bytes, but the manifest says {shard['tokens']} {m['dtype']} tokens "
                                  f"({shard['tokens'] * itemsize} bytes); the file is damaged or from another run: "
                                  f"re-run `owngpt prepare ... --out {out_dir} --force`")
            if verify and file_sha256(f) != shard["sha256"]:
                raise OwnGPTError(f"{f}: sha256 does not match the manifest; the file is damaged: "
                                  f"re-run `owngpt prepare ... --out {out_dir} --force`")
            total += shard["tokens"]
        if total != s.get("tokens", total):
            raise OwnGPTError(f"{path}: split {name!r} says {s.get('tokens')} tokens but its shards hold {total}")
    for name, c in (m.get("conversations") or {}).items():
        if c.get("conversations") and not (out_dir / c["file"]).is_file():
            raise OwnGPTError(f"{path}: {c['file']} ({name} conversations) is missing; re-run `owngpt prepare`")
    return m


def read_shard(out_dir: str | Path, shard: dict[str, Any], dtype: str) -> np.memmap:
    """Memory-map one shard listed in the manifest."""
    return np.memmap(Path(out_dir) / shard["file"], dtype=np.dtype(dtype).newbyteorder("<"), mode="r")
