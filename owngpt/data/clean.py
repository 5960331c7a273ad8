"""Cleaning one text: Unicode normalisation, control characters, HTML, whitespace, length and junk filters, PII.

`clean_text(text, cfg) -> (text | None, changes, reason)` runs the steps in this order and says which ones changed
the text (`changes`) or removed it (`reason`); `Cleaner` runs it over many records and counts per filter and per
source, keeping a few examples of each, for report.json.

Steps (each switchable in CleanConfig):
  nfkc          Unicode NFKC: full-width letters and digits (ＡＢＣ１２３) become ASCII, the ideographic space becomes a
                space, ligatures and circled numbers are unfolded. NFKC would also turn Chinese full-width punctuation
                (，！？：；（）) into ASCII (,!?:;()); by default that punctuation is kept as written, because Chinese
                text uses it on purpose and a chat model should answer with it. `keep_cjk_punct=False` folds it too.
  control_chars C0/C1 control characters (tab and newlines kept), zero-width space, BOM, lone surrogates.
  html          (off by default) tags removed with the stdlib HTMLParser, <script>/<style> bodies dropped, block
                tags become line breaks, entities (&amp; &#20320;) decoded.
  whitespace    CRLF/CR → LF, trailing spaces removed, runs of spaces inside a line → one space (indentation at
                the start of a line is kept, for code and poems), 3+ newlines → one blank line, ends stripped.
  pii_*         e-mail → <EMAIL>; Chinese resident ID (18 characters, checksum verified) → <ID>; bank-card-like
                runs of 13–19 digits (spaces/dashes allowed, Luhn verified, issuer-like first digits) → <CARD>;
                phones (Chinese mobile 1[3-9]xxxxxxxxx with optional +86, Chinese landline 0xx-xxxxxxxx,
                +CC international, North-American 555-123-4567) → <PHONE>; IPv4 / IPv6 addresses → <IP>.
  empty, min_chars, max_chars, junk_lines, junk_chars: filters that remove the whole text.

What it does not catch: names, street addresses, phone numbers written without any separator or country code
other than Chinese mobiles, card numbers that fail the Luhn check. Things it leaves alone on purpose: dates
(2024-01-15, 2024年3月15日), times, years, prices (¥1,299.00), version-like numbers with fewer than four parts,
order numbers that fail the checks above. A dotted quad such as a 4-part version "1.2.3.4" *is* taken for an IP.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

import numpy as np

# ----------------------------------------------------------------------------- config


@dataclass
class CleanConfig:
    """Which cleaning steps run, and the thresholds of the filters."""

    nfkc: bool = True
    keep_cjk_punct: bool = True  # keep ，！？：；（） etc. as written when NFKC runs
    control_chars: bool = True
    strip_html: bool = False
    whitespace: bool = True
    scrub_pii: bool = True
    min_chars: int = 1  # shorter texts (after cleaning) are removed
    max_chars: int = 0  # longer texts are removed; 0 = no limit
    junk_filter: bool = True
    max_dup_line_ratio: float = 0.5  # share of characters in lines that repeat an earlier line (texts of 3+ lines)
    max_char_ratio: float = 0.5  # share of the most frequent non-space character (texts of 10+ such characters)


FILTERS = (
    "nfkc", "control_chars", "html", "whitespace",
    "pii_email", "pii_id", "pii_card", "pii_phone", "pii_ip",
    "empty", "min_chars", "max_chars", "junk_lines", "junk_chars",
)

# ----------------------------------------------------------------------------- normalisation

# Full-width and CJK punctuation that NFKC would fold to ASCII; kept as written when keep_cjk_punct is on.
_CJK_PUNCT = "！＂＃＄％＆＇（）＊＋，－．／：；＜＝＞？＠［＼］＾＿｀｛｜｝～｟｠｡｢｣､･"
_PUNCT_RUN = re.compile(f"[{re.escape(_CJK_PUNCT)}]+")
_PUNCT_SPLIT = re.compile(f"([{re.escape(_CJK_PUNCT)}]+)")


def nfkc(text: str, keep_cjk_punct: bool = True) -> str:
    """NFKC, optionally keeping full-width punctuation as written (see the module docstring)."""
    if unicodedata.is_normalized("NFKC", text):  # a fast check: most text needs nothing
        return text
    if not keep_cjk_punct:
        return unicodedata.normalize("NFKC", text)
    rest, n = _PUNCT_RUN.subn("", text)
    if n == 0:
        return unicodedata.normalize("NFKC", text)
    if unicodedata.is_normalized("NFKC", rest):  # typical Chinese text: only its punctuation is "unnormalised"
        return text
    # Normalise the pieces between punctuation runs (odd items of the split are the runs themselves). NFKC never
    # composes across these punctuation marks, so piecewise equals whole-text normalisation.
    parts = _PUNCT_SPLIT.split(text)
    parts[::2] = [unicodedata.normalize("NFKC", p) for p in parts[::2]]
    return "".join(parts)


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff\ufffe\uffff\ud800-\udfff]")


def strip_control(text: str) -> str:
    """Remove control characters except tab, LF and CR (CR is handled by the whitespace step)."""
    return _CONTROL.sub("", text)


class _TextExtractor(HTMLParser):
    _BLOCK = {"p", "br", "div", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
              "section", "article", "header", "footer", "blockquote", "pre", "hr", "title"}
    _DROP = {"script", "style", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._drop = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self._DROP:
            self._drop += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._DROP:
            self._drop = max(0, self._drop - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._drop:
            self.parts.append(data)


_LOOKS_HTML = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*|/[a-zA-Z]|!--)[^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def strip_html(text: str) -> str:
    """Text content of an HTML/XML fragment; text without tags or entities is returned unchanged."""
    if not _LOOKS_HTML.search(text):
        return text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


_SPACE_RUN = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_TRAILING = re.compile(r"[^\S\n]+$", re.M)
_BLANKS = re.compile(r"\n{3,}")


_ODD_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def normalise_whitespace(text: str) -> str:
    """LF line ends, no trailing spaces, one space between words, at most one blank line, ends stripped."""
    # Substring tests are far cheaper than the regexes below, and most texts pass them all.
    if not ("  " in text or "\t" in text or "\r" in text or " \n" in text or "\n\n\n" in text) and (
        text.isascii() or not _ODD_SPACE.search(text)
    ):
        return text.strip()
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")

    def one_space(m: re.Match) -> str:  # indentation at the start of a line is kept
        i = m.start()
        return m.group(0) if i == 0 or text[i - 1] == "\n" else " "

    text = _SPACE_RUN.sub(one_space, text)
    text = _TRAILING.sub("", text)
    text = _BLANKS.sub("\n\n", text)
    return text.strip()


# ----------------------------------------------------------------------------- PII

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
    r"|\(?[2-9]\d{2}\)?[ .-]\d{3}[ .-]\d{4}"  # North American (555) 123-4567
    r")(?![\d])"
)
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?!\.?\d)")
# Ends in a hex group or "::", so a colon after the address ("IP 2001:db8::1: up") is not taken as part of it.
_IPV6 = re.compile(r"(?<![0-9A-Za-z_:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?<=::))"
                   r"(?![0-9A-Za-z_]|:[0-9A-Za-z_:])")
# One cheap scan decides whether the number patterns need to run at all: IDs, cards and phones have 7+ digits close
# together, IPv4 addresses have a digit-dot-digits-dot-digit run.
_NUMBER_GATE = re.compile(r"\d(?:[ ().+-]{0,2}\d){6}|\d\.\d{1,3}\.\d")

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


def _sub(pattern: re.Pattern, text: str, placeholder: str, check=None, spans: bool = False) -> tuple[str, int]:
    """Replace the matches of `pattern` that pass `check`. spans=True: a match that fails is searched for a run of
    its separator-delimited groups that passes ("ref 0 4111 1111 1111 1111": the card after the stray digit)."""
    count = 0

    def repl(m: re.Match) -> str:
        nonlocal count
        s = m.group(0)
        if check is not None and not check(s):
            if spans:
                out, n = _replace_spans(s, check, placeholder)
                count += n
                return out
            return s
        count += 1
        return placeholder

    out = pattern.sub(repl, text)
    return out, count


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


def _replace_spans(s: str, check, placeholder: str) -> tuple[str, int]:
    """Every passing span of `s` (see _passing_span) replaced, longest first, and how many."""
    span = _passing_span(s, check)
    if span is None:
        return s, 0
    left, n_left = _replace_spans(s[:span[0]], check, placeholder)
    right, n_right = _replace_spans(s[span[1]:], check, placeholder)
    return left + placeholder + right, 1 + n_left + n_right


def scrub_pii(text: str) -> tuple[str, list[str]]:
    """Replace personal data by placeholders; returns the text and the kinds found (pii_email, pii_phone, ...)."""
    found: list[str] = []
    if "@" in text:
        text, n = _sub(_EMAIL, text, "<EMAIL>")
        if n:
            found.append("pii_email")
    n4 = n6 = 0
    if _NUMBER_GATE.search(text):
        for kind, pattern, placeholder, check in (
            ("pii_id", _CN_ID, "<ID>", _id_ok),
            ("pii_card", _CARD, "<CARD>", _card_ok),
            ("pii_phone", _PHONE, "<PHONE>", _phone_ok),
        ):
            text, n = _sub(pattern, text, placeholder, check, spans=kind == "pii_card")
            if n:
                found.append(kind)
        text, n4 = _sub(_IPV4, text, "<IP>")
    if text.count(":") >= 2:
        text, n6 = _sub(_IPV6, text, "<IP>", _ipv6_ok)
    if n4 or n6:
        found.append("pii_ip")
    return text, found


# ----------------------------------------------------------------------------- junk


def dup_line_ratio(text: str) -> float:
    """Share of the characters of non-blank lines that are in a line repeating an earlier one (Gopher's rule)."""
    seen: set[str] = set()
    dup = total = 0
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        total += len(line)
        if line in seen:
            dup += len(line)
        else:
            seen.add(line)
    return dup / total if total else 0.0


def top_char_ratio(text: str) -> float:
    """Share of the most frequent non-space character among the non-space characters."""
    n = len(text) - text.count(" ") - text.count("\n") - text.count("\t")
    if n <= 0:
        return 0.0
    if len(text) <= 256:
        counts = Counter(text)
        for c in " \n\t":
            counts.pop(c, None)
        return max(counts.values(), default=0) / n
    # long texts: code points counted in numpy (~3x faster than a Counter)
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    cps = cps[(cps != 32) & (cps != 10) & (cps != 9)]
    return int(np.unique(cps, return_counts=True)[1].max()) / n


# ----------------------------------------------------------------------------- one text


def clean_text(text: str, cfg: CleanConfig) -> tuple[str | None, list[str], str | None]:
    """(cleaned text or None when removed, names of the steps that changed it, the filter that removed it)."""
    changes: list[str] = []
    steps = (
        (cfg.nfkc, "nfkc", lambda t: nfkc(t, cfg.keep_cjk_punct)),
        (cfg.control_chars, "control_chars", strip_control),
        (cfg.strip_html, "html", strip_html),
        (cfg.whitespace, "whitespace", normalise_whitespace),
    )
    for on, name, step in steps:
        if on:
            new = step(text)
            if new != text:
                changes.append(name)
                text = new
    if cfg.scrub_pii:
        text, found = scrub_pii(text)
        changes.extend(found)
    reason = filter_reason(text, cfg)
    return (None if reason else text), changes, reason


def filter_reason(text: str, cfg: CleanConfig) -> str | None:
    """The name of the first filter that removes `text`, or None to keep it."""
    n = len(text)
    if not text.strip():
        return "empty"
    if n < cfg.min_chars:
        return "min_chars"
    if cfg.max_chars and n > cfg.max_chars:
        return "max_chars"
    if cfg.junk_filter:
        if text.count("\n") >= 2 and dup_line_ratio(text) > cfg.max_dup_line_ratio:
            return "junk_lines"
        # A character above the ratio leaves room for few distinct ones: set() rules most texts out cheaply.
        if n >= 10 and (n > 256 or len(set(text)) <= (1 - cfg.max_char_ratio) * n + 3) \
                and top_char_ratio(text) > cfg.max_char_ratio:
            return "junk_chars"
    return None


def clean_message(text: str, cfg: CleanConfig) -> tuple[str, list[str]]:
    """Clean one chat message: the normalising and scrubbing steps only (a short reply is not junk)."""
    out, changes, _ = clean_text(text, CleanConfig(
        nfkc=cfg.nfkc, keep_cjk_punct=cfg.keep_cjk_punct, control_chars=cfg.control_chars, strip_html=cfg.strip_html,
        whitespace=cfg.whitespace, scrub_pii=cfg.scrub_pii, min_chars=0, max_chars=0, junk_filter=False,
    ))
    return (out if out is not None else ""), changes


# ----------------------------------------------------------------------------- many texts, counted


def _snippet(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class FilterStats:
    """How many texts one filter changed or removed, with a few examples."""

    changed: int = 0
    removed: int = 0
    examples: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"changed": self.changed, "removed": self.removed, "examples": self.examples}


class Cleaner:
    """Runs clean_text over documents and counts, per filter, what changed and what was removed (3 examples each)."""

    def __init__(self, cfg: CleanConfig, examples: int = 3) -> None:
        self.cfg = cfg
        self.max_examples = examples
        self.filters: dict[str, FilterStats] = {}

    def stats(self, name: str) -> FilterStats:
        if name not in self.filters:
            self.filters[name] = FilterStats()
        return self.filters[name]

    def shown(self, text: str) -> str:
        """`text` as a report may quote it: scrubbed first (when scrubbing is on), then cut to a snippet, so a
        report never holds a personal value the cleaned data does not (nor half of one)."""
        return _snippet(scrub_pii(text)[0] if self.cfg.scrub_pii else text)

    def note(self, name: str, loc: str, before: str, after: str | None) -> None:
        """Count one change (after is a string) or removal (after is None) by filter `name`. Examples are built
        from scrubbed text only: "before" is the input with its personal data replaced, and a pii_* example shows
        only "after" (its "before" would be the value it removed)."""
        s = self.stats(name)
        if after is None:
            s.removed += 1
        else:
            s.changed += 1
        if len(s.examples) < self.max_examples:
            ex = {"loc": loc}
            if not name.startswith("pii_"):
                ex["before"] = self.shown(before)
            if after is not None:
                ex["after"] = self.shown(after)
            s.examples.append(ex)

    def __call__(self, text: str, loc: str = "") -> tuple[str | None, bool]:
        """(cleaned text or None when removed, whether any step changed it)."""
        return self.account(text, loc, clean_text(text, self.cfg))

    def account(self, text: str, loc: str, result: tuple[str | None, list[str], str | None]) -> tuple[str | None, bool]:
        """Count what clean_text(text) returned (`result`, computed here or in a worker process); as __call__."""
        out, changes, reason = result
        for name in changes:
            self.note(name, loc, text, out if out is not None else "")
        if reason:
            self.note(reason, loc, text, None)
        return out, bool(changes)

    def message(self, text: str, loc: str = "") -> tuple[str, bool]:
        """Clean one chat message, counting its changes under the same filters."""
        return self.account_message(text, loc, clean_message(text, self.cfg))

    def account_message(self, text: str, loc: str, result: tuple[str, list[str]]) -> tuple[str, bool]:
        """Count what clean_message(text) returned; as message()."""
        out, changes = result
        for name in changes:
            self.note(name, loc, text, out)
        return out, bool(changes)

    def report(self) -> dict[str, dict]:
        order = {name: i for i, name in enumerate(FILTERS)}
        return {k: self.filters[k].as_dict() for k in sorted(self.filters, key=lambda k: order.get(k, len(order)))}
