"""Hugging Face tokenizers as owngpt Tokenizers: byte-level BPE (tokenizer.json, or GPT-2's vocab.json + merges.txt)
or a BERT-style vocab.txt (WordPiece: the Chinese GPT-2 chitchat models use one).

owngpt's ids 0..7 are always its special tokens (owngpt/tokenizer/bpe.py), whatever the vocabulary. An imported
vocabulary is therefore shifted: the source's tokens follow the 8 specials in the source's own order, and a source
token that *is* one of owngpt's specials (GPT-2's <|endoftext|>) takes that special's id instead of a new one.
`ImportedTokenizer.source_ids` says which source id each owngpt id came from (-1 for a special the source lacks);
the importer (owngpt/export/hf.py) moves the embedding rows the same way, so the model computes what it computed
before, and ChatML's tokens exist in every imported vocabulary.

The source's own control tokens ([CLS], [SEP], [PAD], ...) stay ordinary vocabulary entries that no text produces:
owngpt encodes without added tokens, and BERT's pre-tokenizer splits "[SEP]" typed by a user into "[", "sep", "]".

Not handled: SentencePiece/Unigram tokenizers (Llama, T5), BPE that is not byte-level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owngpt.errors import OwnGPTError
from owngpt.tokenizer.bpe import SPECIAL_TOKENS, Tokenizer, read_json_object

# BERT's control tokens as GPT2-chitchat names them; [CLS] opens a dialogue, [SEP] ends every utterance
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CHITCHAT = {"name": "chitchat", "start": "[CLS]", "sep": "[SEP]"}


@dataclass
class ImportedTokenizer:
    """An owngpt Tokenizer made from a Hugging Face one, and where each of its ids came from."""

    tokenizer: Tokenizer
    source_ids: list[int]  # owngpt id -> the source's id of the same token, -1 for a special the source lacks
    files: str  # which files it was read from, for the import record

    @property
    def new_ids(self) -> list[int]:
        """owngpt ids that have no source token (ChatML's specials a foreign vocabulary lacks)."""
        return [i for i, s in enumerate(self.source_ids) if s < 0]


def find_tokenizer_files(folder: Path) -> Path:
    """The folder's tokenizer definition: tokenizer.json, vocab.json (+ merges.txt) or vocab.txt (first found);
    a one-line error listing what was looked for otherwise."""
    for name in ("tokenizer.json", "vocab.json", "vocab.txt"):
        if (folder / name).is_file():
            return folder / name
    raise OwnGPTError(f"{folder} has no tokenizer: expected tokenizer.json, vocab.json + merges.txt (GPT-2's byte-level "
                      "BPE) or vocab.txt (BERT-style, as GPT2-chitchat); give its location with --tokenizer")


def import_tokenizer(path: str | Path, *, lowercase: bool | None = None) -> ImportedTokenizer:
    """An owngpt Tokenizer from a Hugging Face tokenizer folder or file (see find_tokenizer_files). `lowercase`
    (vocab.txt only) overrides tokenizer_config.json's do_lower_case (BERT's default: lower-case)."""
    path = Path(path)
    file = find_tokenizer_files(path) if path.is_dir() else path
    if not file.is_file():
        raise OwnGPTError(f"{file}: tokenizer file not found")
    if file.name == "vocab.txt" or file.suffix == ".txt":
        spec, kind, files = _wordpiece_spec(file, lowercase), "wordpiece", file.name
    elif file.name == "vocab.json":
        spec, kind, files = _bpe_spec_from_vocab(file), "bpe", "vocab.json + merges.txt"
    else:
        spec, kind, files = _read_tokenizer_json(file), None, file.name
        kind = _kind_of(spec, file)
    new_spec, source_ids = _shift_vocab(spec, file)
    vocab = new_spec["model"]["vocab"]
    chat_format = CHITCHAT if kind == "wordpiece" and all(t in vocab for t in ("[CLS]", "[SEP]")) else None
    info = {"imported_from": str(file), "source_vocab_size": len(source_ids) - sum(s < 0 for s in source_ids)}
    tok = Tokenizer(new_spec, kind, info, source=str(file), chat_format=chat_format)
    return ImportedTokenizer(tok, source_ids, files)


# ----------------------------------------------------------------------------- reading the source


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise OwnGPTError(f"{file}: not UTF-8 text (byte {e.start}): tokenizer files are UTF-8") from None


def _read_tokenizer_json(file: Path) -> dict[str, Any]:
    spec = read_json_object(file)
    if not isinstance(spec.get("model"), dict):
        raise OwnGPTError(f"{file}: not a Hugging Face tokenizer.json (no 'model' object)")
    return spec


def _kind_of(spec: dict[str, Any], file: Path) -> str:
    """'bpe' for byte-level BPE, 'wordpiece' for WordPiece; anything else is refused with what it is."""
    model_type = spec["model"].get("type")
    if model_type == "WordPiece":
        return "wordpiece"
    if model_type == "BPE" and "ByteLevel" in json.dumps(spec.get("pre_tokenizer")):
        return "bpe"
    what = f"{model_type} without a byte-level pre-tokenizer" if model_type == "BPE" else repr(model_type)
    raise OwnGPTError(f"{file}: a {what} tokenizer; owngpt imports byte-level BPE (GPT-2 style) and WordPiece "
                      "(BERT-style vocab.txt)")


def _bpe_spec_from_vocab(file: Path) -> dict[str, Any]:
    """GPT-2's original files: vocab.json (token -> id) and merges.txt ("a b" per line, after a '#version' line)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    merges_file = file.with_name("merges.txt")
    if not merges_file.is_file():
        raise OwnGPTError(f"{file} needs merges.txt next to it (GPT-2's byte-level BPE is vocab.json + merges.txt)")
    vocab = _read_tokenizer_json_dict(file)
    merges = []
    for n, line in enumerate(_read_text(merges_file).splitlines(), 1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise OwnGPTError(f"{merges_file}:{n}: a merge is two tokens separated by one space, not {line!r}")
        merges.append((parts[0], parts[1]))
    try:
        hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    except Exception as e:  # the Rust side names e.g. a merge whose parts are not in the vocabulary
        raise OwnGPTError(f"{file}: vocab.json and merges.txt do not fit together: {e}") from None
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's regex inside
    hf.decoder = decoders.ByteLevel()
    return json.loads(hf.to_str())


def _read_tokenizer_json_dict(file: Path) -> dict[str, int]:
    vocab = read_json_object(file)
    if not all(isinstance(v, int) for v in vocab.values()):
        raise OwnGPTError(f"{file}: expected a JSON object of token -> integer id")
    return vocab


def _wordpiece_spec(file: Path, lowercase: bool | None) -> dict[str, Any]:
    """BERT's tokenizer over a vocab.txt (one token per line, id = line number - 1), with BERT's normaliser: text
    cleaned, spaces put around every Han character (so Chinese is one token per character), lower-cased unless
    tokenizer_config.json says do_lower_case false."""
    from tokenizers import AddedToken
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    lines = _read_text(file).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing blank line is not a token
    vocab: dict[str, int] = {}
    for n, token in enumerate(lines, 1):
        if not token:
            raise OwnGPTError(f"{file}:{n}: an empty line; vocab.txt holds one token per line")
        if token in vocab:
            raise OwnGPTError(f"{file}:{n}: token {token!r} appears twice (first on line {vocab[token] + 1})")
        vocab[token] = n - 1
    if "[UNK]" not in vocab:
        raise OwnGPTError(f"{file}: no [UNK] token; a BERT-style vocab.txt needs one for characters it lacks")
    if lowercase is None:
        config = file.with_name("tokenizer_config.json")
        lowercase = bool(read_json_object(config).get("do_lower_case", True)) if config.is_file() else True
    hf = HFTokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    hf.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                               lowercase=lowercase)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece(prefix="##")
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in BERT_SPECIALS if t in vocab])
    return json.loads(hf.to_str())


# ----------------------------------------------------------------------------- owngpt's ids


def _shift_vocab(spec: dict[str, Any], file: Path) -> tuple[dict[str, Any], list[int]]:
    """The spec with owngpt's specials at ids 0..7 and the source's tokens after them (see the module docstring),
    and owngpt id -> source id."""
    source: dict[int, str] = {}
    for token, i in spec["model"].get("vocab", {}).items():
        source[int(i)] = token
    for added in spec.get("added_tokens") or []:
        source.setdefault(int(added["id"]), added["content"])
    if len(set(source.values())) != len(source):
        raise OwnGPTError(f"{file}: one token has two ids")
    vocab = {name: i for i, name in enumerate(SPECIAL_TOKENS)}
    source_ids = [-1] * len(SPECIAL_TOKENS)
    for sid in sorted(source):
        token = source[sid]
        if token in vocab:  # the source's own <|endoftext|> (GPT-2): it is owngpt's special of that name
            source_ids[vocab[token]] = sid
        else:
            vocab[token] = len(source_ids)
            source_ids.append(sid)
    new = json.loads(json.dumps(spec))
    new["model"]["vocab"] = vocab
    new["post_processor"] = None  # BERT's adds [CLS] ... [SEP] to every text: the chat format places them instead
    new["added_tokens"] = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for t in [*SPECIAL_TOKENS, *(a["content"] for a in spec.get("added_tokens") or [] if a["content"] not in SPECIAL_TOKENS)]
    ]
    return new, source_ids
