"""Readers: turn the files a person points at into Document / Conversation / Skip records.

`read_sources(specs)` is the one entry point used by `owngpt prepare`. A spec is one of
  - a file: .txt .text .md .markdown (plain text), .jsonl, .json, .csv, .tsv (any other suffix: plain text)
  - a folder (read recursively in sorted order; hidden files and folders are left out) or a glob (`data/**/*.md`)
  - `chitchat:PATH` or `dialog:PATH`: GPT2-chitchat text, one utterance per line, dialogues split by a blank line
  - `builtin:NAME`: a corpus shipped inside an installed package (see owngpt/data/builtin.py)

Decoding, decided per file by `detect_encoding()` from a sample of its non-ASCII lines:
  - UTF-8 (a BOM is dropped). UTF-16 with a BOM and GB18030/GBK (legacy Chinese Windows files) are converted;
    their records stay in the output and say so: their `loc` ends in " [gb18030]" or " [utf-16]"
    (`converted_from(loc)` reads it back), so a report can count them without a side channel.
  - NUL bytes, or a sample that is mostly undecodable: the file is binary and becomes one Skip("binary file").
  - Otherwise invalid UTF-8 is never replaced by guesswork: the smallest unit holding the bad byte (the whole file
    for a .txt document, one line of JSONL/CSV/block text, one dialogue of chitchat text) becomes a Skip whose
    reason gives the 0-based byte offset of the first bad byte, e.g. "invalid UTF-8 at byte 1234".

Errors the user must fix before anything useful can happen (a missing path, an empty folder, a CSV without the
requested column, an unknown builtin, a missing package) raise OwnGPTError when `read_sources()` is called,
before any record is read. Everything else is a Skip with its reason: nothing is dropped silently.

Not handled: compressed files, Parquet, PDF/HTML/DOCX extraction, encodings other than UTF-8/UTF-16/GB18030.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from functools import partial
from glob import glob
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from owngpt.data.records import Conversation, Document, Record, Skip
from owngpt.errors import OwnGPTError

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown")
READABLE_SUFFIXES = TEXT_SUFFIXES + (".jsonl", ".json", ".csv", ".tsv")
DIALOGUE_PREFIXES = ("chitchat:", "dialog:")
BUILTIN_PREFIX = "builtin:"

# Dialogue speaker names seen in the wild (OpenAI messages, ShareGPT, OpenAssistant, Gemini) -> our three roles.
ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user", "question": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant", "ai": "assistant",
    "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "answer": "assistant",
}

_SNIFF_BYTES = 1 << 16  # how much non-ASCII text decides a file's encoding
_SCAN_LIMIT = 8 << 20  # how far into a file we look for that non-ASCII text
_MARKS = {"gb18030": " [gb18030]", "utf-16": " [utf-16]"}


# ----------------------------------------------------------------------------- decoding


def _decodes(data: bytes, encoding: str, final: bool) -> str | None:
    try:
        return codecs.getincrementaldecoder(encoding)().decode(data, final=final)
    except UnicodeDecodeError:
        return None


def looks_chinese(text: str) -> bool:
    """True when the non-ASCII part of `text` is mostly common Chinese (GB2312 characters and punctuation).

    Latin-1 or random bytes decoded as GB18030 give rare GBK-extension characters instead, so this tells a real
    GBK/GB18030 file from a lucky decode.
    """
    wide = [c for c in text if ord(c) > 0x7F]
    if not wide or not any("\u4e00" <= c <= "\u9fff" for c in wide):
        return False
    common = 0
    for c in wide:
        try:
            c.encode("gb2312")
            common += 1
        except UnicodeEncodeError:
            pass
    return common >= 0.8 * len(wide)


def detect_encoding(path: Path) -> str:
    """'utf-8' | 'utf-8-sig' | 'utf-16' | 'gb18030' | 'binary', judged from the file's first non-ASCII lines."""
    with open(path, "rb") as f:
        start = f.read(_SNIFF_BYTES)
        if start.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if start[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            return "utf-16"
        if b"\0" in start:
            return "binary"
        f.seek(0)
        sample, scanned, final = b"", 0, True
        while scanned < _SCAN_LIMIT and len(sample) < _SNIFF_BYTES:
            piece = f.readline(_SNIFF_BYTES)  # bounded: a binary file may have no newline at all
            if not piece:
                break
            scanned += len(piece)
            if not piece.isascii():
                sample += piece
                if not piece.endswith(b"\n"):  # cut inside a long line: its last character may be cut too
                    final = f.read(1) == b""
                    break
    if not sample or _decodes(sample, "utf-8", final) is not None:
        return "utf-8"
    if b"\0" in sample:
        return "binary"
    gb = _decodes(sample, "gb18030", final)
    if gb is not None and looks_chinese(gb):
        return "gb18030"
    text = sample.decode("utf-8", errors="replace")
    junk = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\n\r\f"))
    return "binary" if junk > 0.3 * len(text) else "utf-8"


def converted_from(loc: str) -> str | None:
    """The encoding a record's text was converted from ('gb18030', 'utf-16'), read from its loc; None if UTF-8."""
    for enc, mark in _MARKS.items():
        if loc.endswith(mark):
            return enc
    return None


def _iter_lines(path: Path, encoding: str) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text with its newline or None, reason when None), streaming; UTF-8 is checked per line."""
    if encoding in ("utf-8", "utf-8-sig"):
        offset = 0
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield lineno, None, f"invalid UTF-8 at byte {offset + e.start}"
                else:
                    if lineno == 1 and text.startswith("\ufeff"):
                        text = text[1:]
                    yield lineno, text, ""
                offset += len(raw)
    else:
        # Converted encodings were sampled already; a rare bad sequence deeper in becomes U+FFFD, not a crash.
        with open(path, encoding=encoding, errors="replace", newline="") as f:
            for lineno, text in enumerate(f, 1):
                yield lineno, text, ""


def _read_whole(path: Path, source: str) -> tuple[str, str] | Skip:
    """(text, loc mark) of a file read at once, or a Skip when it is binary or not decodable."""
    encoding = detect_encoding(path)
    if encoding == "binary":
        return Skip(source, str(path), "binary file")
    try:
        return path.read_bytes().decode(encoding), _MARKS.get(encoding, "")
    except UnicodeDecodeError as e:
        name = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        hint = "; re-save it as UTF-8 (e.g. iconv -f ENCODING -t UTF-8)"
        return Skip(source, str(path), f"invalid {name} at byte {e.start}{hint}")


# ----------------------------------------------------------------------------- plain text


def read_text(path: str | Path, source: str | None = None, *, split_blocks: bool = False) -> Iterator[Record]:
    """One Document per file (loc = path), or with split_blocks one per blank-line-separated block (loc = path:line)."""
    path = Path(path)
    source = source or str(path)
    if split_blocks:
        yield from _read_blocks(path, source)
        return
    got = _read_whole(path, source)
    if isinstance(got, Skip):
        yield got
    elif not got[0].strip():
        yield Skip(source, str(path) + got[1], "empty file")
    else:
        yield Document(got[0], source, str(path) + got[1])


def _read_blocks(path: Path, source: str) -> Iterator[Record]:
    encoding = detect_encoding(path)
    if encoding == "binary":
        yield Skip(source, str(path), "binary file")
        return
    mark = _MARKS.get(encoding, "")
    block: list[str] = []
    start = 0
    for lineno, text, reason in _iter_lines(path, encoding):
        if text is None:
            yield Skip(source, f"{path}:{lineno}", reason)
            continue
        if text.strip():
            start = start or lineno
            block.append(text.rstrip("\r\n"))
        elif block:
            yield Document("\n".join(block), source, f"{path}:{start}{mark}")
            block, start = [], 0
    if block:
        yield Document("\n".join(block), source, f"{path}:{start}{mark}")


# ----------------------------------------------------------------------------- dialogues


def alternating_messages(turns: Iterable[str], first: str = "user") -> list[dict[str, str]]:
    """Utterances of a two-party dialogue -> messages whose roles alternate, starting with `first`."""
    roles = ("user", "assistant") if first == "user" else ("assistant", "user")
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


def _content(value: Any) -> str | None:
    """A message's text: a string, or OpenAI-style content parts [{'type': 'text', 'text': ...}] joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    return None


def normalise_messages(items: Any, role_key: str, content_key: str) -> tuple[list[dict[str, str]] | None, str]:
    """A list of {role_key, content_key} objects -> ([{'role', 'content'}], '') or (None, reason)."""
    if not isinstance(items, list) or not items:
        return None, "must be a non-empty list"
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            return None, f"message {i} is not an object"
        speaker = m.get(role_key)
        role = ROLE_ALIASES.get(speaker.strip().lower()) if isinstance(speaker, str) else None
        if role is None:
            return None, f"message {i}: unknown {role_key} {speaker!r} (expected one of {', '.join(ROLE_ALIASES)})"
        content = _content(m.get(content_key))
        if content is None:
            return None, f"message {i}: '{content_key}' must be a string"
        out.append({"role": role, "content": content})
    return out, ""


def read_chitchat(path: str | Path, source: str | None = None) -> Iterator[Record]:
    """GPT2-chitchat text: one utterance per line, a blank line between dialogues; turns go user, assistant, ...

    loc = path:line of the dialogue's first utterance. A dialogue with an undecodable line is skipped whole,
    because dropping one line would swap the speakers of every later turn.
    """
    path = Path(path)
    source = source or str(path)
    encoding = detect_encoding(path)
    if encoding == "binary":
        yield Skip(source, str(path), "binary file")
        return
    mark = _MARKS.get(encoding, "")
    turns: list[str] = []
    start, problem = 0, ""
    for lineno, text, reason in _iter_lines(path, encoding):
        if text is not None and not text.strip():
            if turns or problem:
                yield _dialogue(turns, problem, source, f"{path}:{start}{mark}")
            turns, start, problem = [], 0, ""
            continue
        start = start or lineno
        if text is None:
            problem = problem or f"line {lineno}: {reason}"
        else:
            turns.append(text.strip())
    if turns or problem:
        yield _dialogue(turns, problem, source, f"{path}:{start}{mark}")


def _dialogue(turns: list[str], problem: str, source: str, loc: str) -> Record:
    if problem:
        return Skip(source, loc, problem)
    return Conversation(alternating_messages(turns), source, loc)


# ----------------------------------------------------------------------------- JSON and JSONL


def _record_from_obj(obj: Any, source: str, loc: str, text_field: str) -> Record:
    """One parsed JSON value -> Conversation (messages / ShareGPT / instruction pairs), Document, or Skip."""
    if isinstance(obj, str):
        return Document(obj, source, loc) if obj.strip() else Skip(source, loc, "empty text")
    if not isinstance(obj, dict):
        return Skip(source, loc, f"expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj or "conversations" in obj:
        key, role_key, content_key = (
            ("messages", "role", "content") if "messages" in obj else ("conversations", "from", "value")
        )
        messages, reason = normalise_messages(obj[key], role_key, content_key)
        if messages is None:
            return Skip(source, loc, f"'{key}' {reason}")
        system = obj.get("system")  # ShareGPT variants keep the system prompt beside the turns
        if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        return Conversation(messages, source, loc)
    if text_field in obj:
        text = obj[text_field]
        if not isinstance(text, str):
            return Skip(source, loc, f"field '{text_field}' is {type(text).__name__}, not a string")
        return Document(text, source, loc) if text.strip() else Skip(source, loc, f"empty field '{text_field}'")
    pair = _instruction_pair(obj)
    if pair is not None:
        return Conversation(alternating_messages(pair), source, loc)
    fields = ", ".join(map(str, list(obj)[:10])) or "none"
    return Skip(source, loc, f"missing field '{text_field}' (fields here: {fields}; choose one with --text-field)")


def _instruction_pair(obj: dict) -> tuple[str, str] | None:
    """Alpaca {instruction, input, output} and {prompt, response|completion} lines -> (user, assistant)."""
    if isinstance(obj.get("instruction"), str) and isinstance(obj.get("output"), str):
        extra = obj.get("input")
        user = obj["instruction"] + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else "")
        return user, obj["output"]
    reply = obj.get("response", obj.get("completion"))
    if isinstance(obj.get("prompt"), str) and isinstance(reply, str):
        return obj["prompt"], reply
    return None


def _starts_with(path: Path, char: bytes) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    return head.removeprefix(codecs.BOM_UTF8).lstrip().startswith(char)


def read_jsonl(path: str | Path, source: str | None = None, *, text_field: str = "text") -> Iterator[Record]:
    """One record per line (loc = path:line), streamed; a file that is really one JSON array goes to read_json."""
    path = Path(path)
    source = source or str(path)
    if _starts_with(path, b"["):
        yield from _json_document(path, source, text_field)
    else:
        yield from _jsonl_lines(path, source, text_field)


def _jsonl_lines(path: Path, source: str, text_field: str) -> Iterator[Record]:
    encoding = detect_encoding(path)
    if encoding == "binary":
        yield Skip(source, str(path), "binary file")
        return
    mark = _MARKS.get(encoding, "")
    for lineno, text, reason in _iter_lines(path, encoding):
        loc = f"{path}:{lineno}{mark}"
        if text is None:
            yield Skip(source, loc, f"{path}:{lineno}: {reason}")
            continue
        if not text.strip():
            continue  # blank lines separate nothing in JSONL; they are not records
        try:
            obj = json.loads(text.rstrip("\r\n"))
        except json.JSONDecodeError as e:
            yield Skip(source, loc, f"{path}:{lineno}: invalid JSON: {e.msg} at column {e.colno}")
            continue
        yield _record_from_obj(obj, source, loc, text_field)


def read_json(path: str | Path, source: str | None = None, *, text_field: str = "text") -> Iterator[Record]:
    """A .json file: a list of objects (loc = path[i]) or one object; JSONL saved as .json is read as JSONL."""
    path = Path(path)
    yield from _json_document(path, source or str(path), text_field)


def _json_document(path: Path, source: str, text_field: str) -> Iterator[Record]:
    got = _read_whole(path, source)
    if isinstance(got, Skip):
        yield got
        return
    text, mark = got
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several values, one per line: it is JSONL with a .json name
            yield from _jsonl_lines(path, source, text_field)
        else:
            yield Skip(source, f"{path}{mark}", f"{path}:{e.lineno}: invalid JSON: {e.msg} at column {e.colno}")
        return
    if isinstance(data, list):
        for i, obj in enumerate(data):
            yield _record_from_obj(obj, source, f"{path}[{i}]{mark}", text_field)
    else:
        yield _record_from_obj(data, source, f"{path}{mark}", text_field)


# ----------------------------------------------------------------------------- CSV and TSV


def read_csv(
    path: str | Path, source: str | None = None, *, text_column: str = "text", delimiter: str | None = None
) -> Iterator[Record]:
    """One Document per row from column `text_column` (loc = path:line), streamed.

    The delimiter follows the suffix (.tsv: tab, without quoting, as TSV has none; otherwise comma with CSV
    quoting). A missing column raises OwnGPTError: no row could be read, so the option must change.
    """
    path = Path(path)
    source = source or str(path)
    tsv = path.suffix.lower() == ".tsv" if delimiter is None else delimiter == "\t"
    delimiter = delimiter or ("\t" if tsv else ",")
    encoding = detect_encoding(path)
    if encoding == "binary":
        yield Skip(source, str(path), "binary file")
        return
    mark = _MARKS.get(encoding, "")
    problems: list[Skip] = []
    where = [0]  # line number of the last physical line handed to the csv module

    def decoded_lines() -> Iterator[str]:
        for lineno, text, reason in _iter_lines(path, encoding):
            where[0] = lineno
            if text is None:
                problems.append(Skip(source, f"{path}:{lineno}", reason))
            else:
                yield text

    # A single review or article can exceed the csv module's 128 KiB default field limit.
    csv.field_size_limit(2**31 - 1)
    quoting = csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
    reader = csv.reader(decoded_lines(), delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    yield from problems
    problems.clear()
    if header is None:
        yield Skip(source, str(path), "empty file")
        return
    names = [h.strip() for h in header]
    if text_column not in names:
        raise OwnGPTError(
            f"{path}: no column '{text_column}'; its columns are: {', '.join(names) or '(none)'}. "
            f"Choose one with --text-column"
        )
    col = names.index(text_column)
    for row in reader:
        yield from problems
        problems.clear()
        loc = f"{path}:{where[0]}{mark}"
        if not row:
            continue  # a blank line
        if col >= len(row):
            yield Skip(source, loc, f"row has {len(row)} fields, none in column '{text_column}'")
        elif not row[col].strip():
            yield Skip(source, loc, f"empty column '{text_column}'")
        else:
            yield Document(row[col], source, loc)
    yield from problems


# ----------------------------------------------------------------------------- specs


def _walk(folder: Path) -> Iterator[Path]:
    """Files under `folder`, depth first in sorted order, leaving out hidden files and folders."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _reader_for(path: Path, dialogue: bool, opts: dict[str, Any]) -> Callable[..., Iterator[Record]]:
    if dialogue:
        return read_chitchat
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return partial(read_jsonl, text_field=opts["text_field"])
    if suffix == ".json":
        return partial(read_json, text_field=opts["text_field"])
    if suffix in (".csv", ".tsv"):
        return partial(read_csv, text_column=opts["text_column"])
    return partial(read_text, split_blocks=opts["split_blocks"])


def _plan(spec: str, opts: dict[str, Any]) -> list[Callable[[], Iterator[Record]]]:
    """What reading one spec means, as a list of zero-argument readers; user errors are raised here."""
    if spec.startswith(BUILTIN_PREFIX):
        from owngpt.data.builtin import read_builtin  # builtin.py uses this module's helpers

        records = read_builtin(spec[len(BUILTIN_PREFIX):], spec)  # checks name and package now
        return [lambda: records]
    dialogue = spec.startswith(DIALOGUE_PREFIXES)
    target = spec.split(":", 1)[1] if dialogue else spec
    if os.path.exists(target):  # first, so that a real name such as "notes[1].txt" is not taken for a glob
        paths = [Path(target)]
    elif any(c in target for c in "*?["):
        paths = [Path(p) for p in sorted(glob(target, recursive=True))]
        if not paths:
            raise OwnGPTError(f"{spec}: no files match this pattern")
    else:
        raise OwnGPTError(f"{spec}: no such file or folder")
    suffixes = TEXT_SUFFIXES if dialogue else READABLE_SUFFIXES  # dialogue text is plain text
    wanted = " ".join(suffixes)
    tasks: list[Callable[[], Iterator[Record]]] = []
    for path in paths:
        if path.is_dir():
            found, others = [], []
            for f in _walk(path):
                (found if f.suffix.lower() in suffixes else others).append(f)
            if not found:
                seen = f"; found {len(others)} other files, e.g. {others[0].name}" if others else ""
                raise OwnGPTError(f"no readable files in {path} (looked for {wanted}){seen}")
            reason = f"not a readable file type (readable: {wanted})"
            tasks.append(partial(iter, [Skip(spec, str(f), reason) for f in others]))
        else:
            found = [path]
        for f in found:
            read = _reader_for(f, dialogue, opts)
            if not dialogue and f.suffix.lower() in (".csv", ".tsv"):
                # Reading the header now makes a wrong --text-column fail at once, not after an hour of work.
                rows = read(f, spec)
                next(rows, None)
                rows.close()
            tasks.append(partial(read, f, spec))
    return tasks


def read_sources(
    specs: list[str], *, text_field: str = "text", text_column: str = "text", split_blocks: bool = False
) -> Iterator[Record]:
    """Records from every spec in order (see the module docstring for what a spec can be).

    Specs are checked now: a missing path, empty folder, unknown builtin, missing package or CSV without
    `text_column` raises OwnGPTError before any record is read; the records themselves are streamed.
    """
    if isinstance(specs, (str, Path)):
        specs = [str(specs)]
    opts = dict(text_field=text_field, text_column=text_column, split_blocks=split_blocks)
    tasks = [task for spec in specs for task in _plan(str(spec), opts)]
    return _chain(tasks)


def _chain(tasks: list[Callable[[], Iterator[Record]]]) -> Iterator[Record]:
    for task in tasks:
        yield from task()
