"""Decoding a person's files: each file's encoding judged from a sample, lines read without guessing.

Decided per file by `detect_encoding()` from a sample of its non-ASCII lines:
  - UTF-8 (a BOM is dropped). UTF-16 with a BOM and GB18030/GBK (legacy Chinese Windows files) are converted;
    their records stay in the output and say so: their `loc` ends in " [gb18030]" or " [utf-16]"
    (`converted_from(loc)` reads it back), so a report can count them without a side channel.
  - NUL bytes, or a sample that is mostly undecodable: the file is binary and becomes one Skip("binary file").
  - Otherwise invalid UTF-8 is never replaced by guesswork: `iter_lines` reports each line holding a bad byte with
    the 0-based byte offset of that byte, e.g. "invalid UTF-8 at byte 1234", and the reader skips the smallest
    unit that holds it (owngpt/data/sources.py).

Not handled: encodings other than UTF-8/UTF-16/GB18030.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Iterator

from owngpt.data.records import Skip
from owngpt.lang import has_han

_SNIFF_BYTES = 1 << 16  # how much non-ASCII text decides a file's encoding
_SCAN_LIMIT = 8 << 20  # how far into a file we look for that non-ASCII text
MARKS = {"gb18030": " [gb18030]", "utf-16": " [utf-16]"}  # the end of the loc of a converted file's records
Line = tuple[int, "str | None", str]  # iter_lines: (line number, text with its newline or None, reason when None)


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
    if not has_han(text):
        return False
    wide = [c for c in text if ord(c) > 0x7F]
    common = 0
    for c in wide:
        try:
            c.encode("gb2312")
            common += 1
        except UnicodeEncodeError:
            pass
    return common >= 0.8 * len(wide)


def _marked(start: bytes) -> str | None:
    """What a file's first bytes decide alone: a byte-order mark, or NUL bytes (binary); None when they do not."""
    if start.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if start[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    return "binary" if b"\0" in start else None


def _judged(sample: bytes, final: bool) -> str:
    """THE judgement of an unmarked file from a sample of its non-ASCII lines (`final`: the sample ends where the
    file does, so its last character is whole)."""
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


def detect_encoding(path: Path) -> str:
    """'utf-8' | 'utf-8-sig' | 'utf-16' | 'gb18030' | 'binary', judged from the file's first non-ASCII lines."""
    with open(path, "rb") as f:
        marked = _marked(f.read(_SNIFF_BYTES))
        if marked is not None:
            return marked
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
    return _judged(sample, final)


def head_text(path: Path, size: int = 8192) -> str:
    """The first `size` bytes of a file decoded in the encoding the same judgement gives for them (undecodable
    bytes replaced), for recognising a file's format cheaply; '' for a binary start."""
    with open(path, "rb") as f:
        head = f.read(size)
    encoding = _marked(head) or _judged(b"\n".join(x for x in head.split(b"\n") if not x.isascii()), False)
    if encoding == "binary":
        return ""
    if encoding == "utf-16":
        head = head[: len(head) // 2 * 2]
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(head, final=False)


def file_encoding(path: Path, source: str) -> tuple[str, str] | Skip:
    """(encoding, loc mark) to read `path` with (see iter_lines), or Skip("binary file")."""
    encoding = detect_encoding(path)
    if encoding == "binary":
        return Skip(source, str(path), "binary file")
    return encoding, MARKS.get(encoding, "")


def converted_from(loc: str) -> str | None:
    """The encoding a record's text was converted from ('gb18030', 'utf-16'), read from its loc; None if UTF-8."""
    for enc, mark in MARKS.items():
        if loc.endswith(mark):
            return enc
    return None


def iter_lines(path: Path, encoding: str) -> Iterator[Line]:
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


def read_whole(path: Path, source: str) -> tuple[str, str] | Skip:
    """(text, loc mark) of a file read at once, or a Skip when it is binary or not decodable."""
    got = file_encoding(path, source)
    if isinstance(got, Skip):
        return got
    encoding, mark = got
    try:
        return path.read_bytes().decode(encoding), mark
    except UnicodeDecodeError as e:
        name = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        hint = "; re-save it as UTF-8 (e.g. iconv -f ENCODING -t UTF-8)"
        return Skip(source, str(path), f"invalid {name} at byte {e.start}{hint}")
