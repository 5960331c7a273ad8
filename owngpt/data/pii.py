"""Personal data in text: e-mail addresses, Chinese resident IDs, bank cards, phone numbers and IP addresses found
and replaced by placeholders (<EMAIL>, <ID>, <CARD>, <PHONE>, <IP>); `scrub_pii(text) -> (text, kinds found)`.
`scrubbed(name)` is the same for a file name or location that a report prints or writes (WhatsApp names an export
after the contact: "WhatsApp Chat with +1 415 555 2671.txt").

The patterns read a *folded view* of the text, not the text as written, so that a value does not escape them by
being written in another form of the same characters: full-width or other compatibility forms that NFKC turns
into ASCII letters, digits or the punctuation the patterns read (`ｂｏｂ＠ｅｘａｍｐｌｅ．ｏｒｇ`, `１３８１２３４５６７８`,
`⑴`, superscript digits; cleaning's NFKC step keeps the full-width `＠．：（）` of Chinese text as written, and they
must still be read as `@.:()`), invisible characters between its characters (zero-width space and joiners,
word joiner, soft hyphen, direction marks, BOM, variation selectors, other control characters: what cleaning
removes, and what it leaves), and odd or repeated spaces (`138  1234\\u00a05678`). A match in the view replaces
the characters it came from, so the rest of the text stays as written. The same view serves text before
cleaning (a report quoting a raw snippet) and after it: a value cleaning would reveal is found in both.

What it does not catch (names, street addresses, numbers in none of the shapes below): see owngpt/data/clean.py.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from bisect import bisect_right
from itertools import chain
from typing import Callable, NamedTuple

# ----------------------------------------------------------------------------- the folded view

# The characters the patterns below read; a compatibility form folds only when NFKC makes it one of these, so
# Chinese punctuation the patterns never read (，！？；) leaves the fast path alone.
_READ = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@.+-:()%_ ")
# Where NFKC maps characters into _READ (every other block maps none; tests/test_data_clean.py checks this against
# all of Unicode), and where the invisible characters are.
_BLOCKS = (range(0x80, 0x10000), range(0x10780, 0x107C0), range(0x110BD, 0x110CE), range(0x13430, 0x13440),
           range(0x1BCA0, 0x1BCA4), range(0x1D173, 0x1D800), range(0x1F100, 0x1F200), range(0x1FBF0, 0x1FC00),
           range(0xE0000, 0xE0080), range(0xE0100, 0xE01F0))


def _invisible(c: str) -> bool:
    """Removed from the view: control and format characters (zero-width space/joiners, word joiner, soft hyphen,
    direction marks, BOM, tags), lone surrogates, non-characters and variation selectors; not tab or line ends."""
    cp = ord(c)
    return (unicodedata.category(c) in ("Cc", "Cf", "Cs") and c not in "\t\n\r") or cp in (0x34F, 0xFFFE, 0xFFFF) \
        or 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


@functools.cache
def fold_tables() -> tuple[dict[int, str], dict[str, str]]:
    """({code point: one character}: folds that keep every position, {character: its folding of another length
    ("" for a removed one)}), built once per process from unicodedata (~30 ms)."""
    same: dict[int, str] = {0x09: " "}
    other: dict[str, str] = {}
    for cp in chain(range(0x00, 0x80), *_BLOCKS):
        c = chr(cp)
        if _invisible(c):
            other[c] = ""
            continue
        if cp < 0x80:
            continue
        n = " " if c.isspace() and c not in "\n\r" else unicodedata.normalize("NFKC", c)
        if n != c and n and set(n) <= _READ:
            if len(n) == 1:
                same[cp] = n
            else:
                other[c] = n
    return same, other


def _char_class(chars) -> str:
    """A regex class of `chars` written as ranges (a class of a thousand single characters is searched ~1000x
    slower)."""
    cps = sorted(map(ord, chars))
    parts = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        a, b = re.escape(chr(cps[i])), re.escape(chr(cps[j]))
        parts.append(a if i == j else f"{a}-{b}")
        i = j + 1
    return "[" + "".join(parts) + "]"


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
# Full-width punctuation that Chinese text keeps through cleaning (NFKC's keep_cjk_punct): folded with str.replace,
# ~20x cheaper than a regex callback for each
_COMMON = {"：": ":", "（": "(", "）": ")", "％": "%", "．": "."}
_ASCII_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Patterns(NamedTuple):
    any_bmp: re.Pattern  # a BMP character that folds (but the _COMMON ones)
    same_bmp: re.Pattern  # a run of BMP characters that fold one for one
    other_bmp: re.Pattern  # a BMP character whose fold has another length
    astral: re.Pattern  # an astral character that may fold (a few coarse ranges)
    astral_same: dict[int, str]  # the one-for-one folds of astral characters
    walk: re.Pattern  # a run of removed characters, of spaces, or a character whose fold is longer


@functools.cache
def _fold_patterns() -> _Patterns:
    """A class of BMP characters is searched at ~7 ns a character, one with astral ranges at ~10 ns per range:
    the astral planes get a class of their own, searched only in texts that hold astral characters (emoji)."""
    same, other = fold_tables()
    bmp_same = [chr(c) for c in same if c < 0x10000 and chr(c) not in _COMMON]
    bmp_other = [c for c in other if ord(c) < 0x10000]
    coarse: list[list[int]] = []
    for cp in sorted(cp for cp in chain(same, map(ord, other)) if cp >= 0x10000):
        if coarse and cp - coarse[-1][1] <= 0x100:
            coarse[-1][1] = cp
        else:
            coarse.append([cp, cp])
    return _Patterns(
        re.compile(_char_class(bmp_same + bmp_other)), re.compile(_char_class(bmp_same) + "+"),
        re.compile(_char_class(bmp_other)), re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in coarse) + "]"),
        {cp: n for cp, n in same.items() if cp >= 0x10000},
        re.compile(_char_class(c for c, n in other.items() if not n) + "+| {2,}|"
                   + _char_class(c for c, n in other.items() if n)))


class FoldMap:
    """Where each character of a folded text came from: the segments whose length folding changed, as
    (folded start, folded end, original start, original end); every other character kept its offset."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.segments: list[tuple[int, int, int, int]] = []

    def add(self, fs: int, fe: int, os_: int, oe: int) -> None:
        self.starts.append(fs)
        self.segments.append((fs, fe, os_, oe))

    def start(self, j: int) -> int:
        """The original offset of folded character j (the first of its source characters)."""
        k = bisect_right(self.starts, j) - 1
        if k < 0:
            return j
        fs, fe, os_, oe = self.segments[k]
        return os_ if j < fe else oe + (j - fe)

    def end(self, j: int) -> int:
        """The original offset just after the source of folded character j - 1 (the end of a span ending at j)."""
        i = j - 1
        k = bisect_right(self.starts, i) - 1
        if k < 0:
            return j
        fs, fe, os_, oe = self.segments[k]
        return oe if i < fe else oe + (i - fe) + 1


def fold(text: str) -> tuple[str, FoldMap | None]:
    """(the folded view of `text` (see the module docstring), where its characters came from; None when every
    character kept its offset)."""
    p = _fold_patterns()
    if text.isascii():  # the common case: tabs to spaces, then only controls and double spaces change lengths
        if "\t" in text:
            text = text.replace("\t", " ")
        if "  " not in text and _ASCII_INVISIBLE.search(text) is None:
            return text, None
    else:
        for c, a in _COMMON.items():
            if c in text:
                text = text.replace(c, a)
        astral = _ASTRAL.search(text) is not None and p.astral.search(text) is not None
        if not astral and p.any_bmp.search(text) is None:
            return (text, None) if "  " not in text else _walk(text, p)
        same = fold_tables()[0]
        text = p.same_bmp.sub(lambda m: m.group().translate(same), text)
        if astral:
            text = text.translate(p.astral_same)
        elif "  " not in text and p.other_bmp.search(text) is None:
            return text, None
    return _walk(text, p)


def _walk(text: str, p: _Patterns) -> tuple[str, FoldMap | None]:
    """The folds that change lengths: removed characters, runs of spaces, longer folds."""
    other = fold_tables()[1]
    m = p.walk.search(text)
    if m is None:
        return text, None
    where = FoldMap()
    out: list[str] = []
    last = 0  # in the text
    size = 0  # of the folded text so far
    while m is not None:
        a, b = m.span()
        s = m.group()
        new = " " if s[0] == " " else other[s[0]] and other[s]
        out.append(text[last:a])
        size += a - last
        where.add(size, size + len(new), a, b)
        out.append(new)
        size += len(new)
        last = b
        m = p.walk.search(text, b)
    out.append(text[last:])
    return "".join(out), where


# ----------------------------------------------------------------------------- patterns

# Boundaries use ASCII classes: in Unicode regexes Chinese characters are \w, and "手机13812345678" must match.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9_])")
# 6-digit region, birth date 18xx-20xx, 3-digit sequence, check character; validated by _id_ok.
_CN_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                    r"\d{3}[0-9Xx](?![0-9A-Za-z])")
# A whole run of digit groups (13 digits or more); a run longer than a card is searched for one (_passing_span).
_CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){12,}(?![\d]|[.,]\d)")
_PHONE = re.compile(
    r"(?<![0-9A-Za-z_+])(?:"
    r"(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}"  # Chinese mobile
    r"|(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # international, validated by digit count
    r"|\(0\d{2,3}\)[ -]?\d{7,8}|0\d{2,3}-\d{7,8}"  # Chinese landline (010-12345678)
    r"|(?:\([2-9]\d{2}\)|[2-9]\d{2})[ .-]\d{3}[ .-]\d{4}"  # North American (555) 123-4567 (parentheses paired)
    r")(?![\d])"
)
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?!\.?\d)")
# Ends in a hex group or "::", so a colon after the address ("IP 2001:db8::1: up") is not taken as part of it.
_IPV6 = re.compile(r"(?<![0-9A-Za-z_:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?<=::))"
                   r"(?![0-9A-Za-z_]|:[0-9A-Za-z_:])")
# One cheap scan decides whether the number patterns need to run at all: IDs, cards and phones have 7+ digits close
# together, IPv4 addresses have a digit-dot-digits-dot-digit run; IPv6 addresses have two colons with at most 4 hex
# digits between them (a literal first: a fast scan, where text with colons is common, e.g. Chinese "他说：").
_NUMBER_GATE = re.compile(r"\d(?:[ ().+-]{0,2}\d){6}|\d\.\d{1,3}\.\d")
_IPV6_GATE = re.compile(r":[0-9A-Fa-f]{0,4}:")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id_ok(s: str) -> bool:
    """GB 11643 check character of an 18-character Chinese resident ID."""
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS))
    return "10X98765432"[total % 11] == s[17].upper()


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that payment card numbers carry."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(s: str) -> bool:
    digits = s.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19:
        return False
    # Issuer-like first digits (Amex/JCB/Diners 3, Visa 4, Mastercard 5 and 2221-2720, UnionPay/Discover 6):
    # rules out timestamps (2024...) and ISBNs (978...) that happen to pass Luhn.
    if digits[0] not in "3456" and not 2221 <= int(digits[:4]) <= 2720:
        return False
    return luhn_ok(digits)


def _phone_ok(s: str) -> bool:
    n = sum(c.isdigit() for c in s)
    if s[0] in "+0" and not s.startswith("0"):  # international: 8-15 digits by E.164
        return 8 <= n <= 15
    return 7 <= n <= 15


def _ipv6_ok(s: str) -> bool:
    if sum(1 for g in s.split(":") if g) < 3:  # "a::b" in code, "12:30:45" times
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _spans(pattern: re.Pattern, text: str, check: Callable[[str], bool] | None = None,
           spans: bool = False) -> list[tuple[int, int]]:
    """(start, end) of every match of `pattern` that passes `check`. spans=True: a match that fails is searched for
    runs of its separator-delimited groups that pass ("ref 0 4111 1111 1111 1111": the card after the stray
    digit)."""
    out = []
    for m in pattern.finditer(text):
        s = m.group(0)
        if check is None or check(s):
            out.append(m.span())
        elif spans:
            out.extend((m.start() + a, m.start() + b) for a, b in _passing_spans(s, check))
    return out


def _passing_span(s: str, check, max_digits: int = 19) -> tuple[int, int] | None:
    """The longest run of whole separator-delimited groups of `s` (groups of 3 or more digits, at most `max_digits`
    digits in all) that passes `check`, as (start, end); None when there is none."""
    bounds = [0] + [i + 1 for i, c in enumerate(s) if c in " -"]
    groups = [(a, (b - 1) if b else len(s)) for a, b in zip(bounds, bounds[1:] + [0])]  # (start, end) per group
    best = None
    for i, (a, _) in enumerate(groups):
        for start, b in groups[i:]:
            if b - start < 3:  # card numbers are written in groups of 3-6 digits, not "1 2 3 4 ..."
                break
            if sum(ch.isdigit() for ch in s[a:b]) > max_digits:
                break
            if (best is None or b - a > best[1] - best[0]) and check(s[a:b]):
                best = (a, b)
    return best


def _passing_spans(s: str, check) -> list[tuple[int, int]]:
    """Every passing span of `s` (see _passing_span), longest first, in order of position."""
    span = _passing_span(s, check)
    if span is None:
        return []
    right = [(span[1] + a, span[1] + b) for a, b in _passing_spans(s[span[1]:], check)]
    return _passing_spans(s[:span[0]], check) + [span] + right


def _replace(text: str, hits: list[tuple[int, int]], where: FoldMap | None, placeholder: str) -> str:
    """`text` with the characters of every hit (spans of its folded view) replaced by `placeholder`."""
    out = []
    last = 0
    for a, b in hits:
        if where is not None:
            a, b = max(where.start(a), last), where.end(b)
        out.append(text[last:a])
        out.append(placeholder)
        last = b
    out.append(text[last:])
    return "".join(out)


_KINDS = (  # (kind, pattern, placeholder, check, search failing runs for spans), in the order they run
    ("pii_id", _CN_ID, "<ID>", _id_ok, False),
    ("pii_card", _CARD, "<CARD>", _card_ok, True),
    ("pii_phone", _PHONE, "<PHONE>", _phone_ok, False),
    ("pii_ip", _IPV4, "<IP>", None, False),
)


def scrub_pii(text: str) -> tuple[str, list[str]]:
    """Replace personal data by placeholders; returns the text and the kinds found (pii_email, pii_phone, ...).
    The patterns read the folded view of the text (see the module docstring)."""
    found: list[str] = []
    view, where = fold(text)

    def replace(kind: str, pattern: re.Pattern, placeholder: str, check=None, spans: bool = False) -> None:
        nonlocal text, view, where
        hits = _spans(pattern, view, check, spans)
        if hits:
            text = _replace(text, hits, where, placeholder)
            # where every character kept its offset, the view is replaced alike; otherwise it is folded anew
            view, where = (_replace(view, hits, None, placeholder), None) if where is None else fold(text)
            if kind not in found:
                found.append(kind)

    if "@" in view:
        replace("pii_email", _EMAIL, "<EMAIL>")
    if _NUMBER_GATE.search(view):
        for kind, pattern, placeholder, check, spans in _KINDS:
            replace(kind, pattern, placeholder, check, spans)
    if _IPV6_GATE.search(view):
        replace("pii_ip", _IPV6, "<IP>", _ipv6_ok)
    return text, found


PLACEHOLDER = re.compile("<(?:EMAIL|ID|CARD|PHONE|IP)>")  # what scrub_pii puts in place of a value


@functools.lru_cache(maxsize=4096)
def scrubbed(name: str) -> str:
    """A file name, path or `file:line` location with its personal data replaced, as every report, record and
    error message that names a file shows it (cached: the same few paths are shown again and again)."""
    return scrub_pii(name)[0]
