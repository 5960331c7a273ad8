"""Cleaning one text: Unicode normalisation, control characters, HTML, whitespace, length and junk filters, PII.

`clean_text(text, cfg) -> (text | None, changes, reason)` runs the steps in this order and says which ones changed
the text (`changes`) or removed it (`reason`); `Cleaner` runs it over many records and counts per filter and per
source, keeping a few examples of each, for report.json. `quoted(text, cfg)` is how any report may quote a text
(examples, skip reasons): scrubbed so that it holds no value the scrubber replaces in the cleaned text.

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
  pii_*         (owngpt/data/pii.py) e-mail → <EMAIL>; Chinese resident ID (18 characters, checksum verified) →
                <ID>; bank-card-like runs of 13–19 digits (spaces/dashes allowed, Luhn verified, issuer-like first
                digits) → <CARD>; phones (Chinese mobile 1[3-9]xxxxxxxxx with optional +86, Chinese landline
                0xx-xxxxxxxx, +CC international, North-American 555-123-4567) → <PHONE>; IPv4 / IPv6 addresses →
                <IP>. Found in any form of their characters that NFKC folds, and across invisible characters
                (`bob＠example．org`, `138\\u200b1234\\u200b5678`), which the steps above may leave in the text.
  empty, min_chars, max_chars, junk_lines, junk_chars: filters that remove the whole text.

What it does not catch: names, street addresses, phone numbers written without any separator or country code
other than Chinese mobiles, card numbers that fail the Luhn check. Things it leaves alone on purpose: dates
(2024-01-15, 2024年3月15日), times, years, prices (¥1,299.00), version-like numbers with fewer than four parts,
order numbers that fail the checks above. A dotted quad such as a 4-part version "1.2.3.4" *is* taken for an IP.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

import numpy as np

from owngpt.data.pii import luhn_ok, scrub_pii, scrubbed  # noqa: F401 (luhn_ok: part of this module's interface)

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
    # long texts: code points counted in numpy (~3x faster than a Counter), in pieces of _COUNT_PIECE characters
    # so that a huge text needs 4 bytes per character of one piece, not of the whole text
    total: Counter = Counter()
    for i in range(0, len(text), _COUNT_PIECE):
        cps = np.frombuffer(text[i:i + _COUNT_PIECE].encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        values, counts = np.unique(cps, return_counts=True)
        total.update(dict(zip(values.tolist(), counts.tolist())))
    for cp in (32, 10, 9):
        total.pop(cp, None)
    return max(total.values(), default=0) / n


_COUNT_PIECE = 1 << 20


# ----------------------------------------------------------------------------- one text


def normalise(text: str, cfg: CleanConfig) -> tuple[str, list[str]]:
    """The normalising steps of cleaning (NFKC, control characters, HTML, whitespace, as `cfg` switches them):
    (the text, names of the steps that changed it)."""
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
    return text, changes


def clean_text(text: str, cfg: CleanConfig) -> tuple[str | None, list[str], str | None]:
    """(cleaned text or None when removed, names of the steps that changed it, the filter that removed it)."""
    text, changes = normalise(text, cfg)
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


SNIPPET = 200  # characters of a text a report quotes
# Characters no personal value can contain in any form the scrubber reads, and that HTML stripping never joins
# across (tests/test_data_clean.py checks them): a text cut just before one is scrubbed as in the whole text.
_HARD_STOP = re.compile("[\n,!?\"|\\\\{}\\[\\]^~`\u3001-\u303f\u4e00-\u9fff]")


def quoted(text: str, cfg: CleanConfig, limit: int = SNIPPET) -> str:
    """`text` as a report may quote it (an example of a filter, a skip reason): at most `limit` characters, and
    no value that the scrubber would replace in the cleaned text, nor a part of one.

    Scrubbing (when cfg scrubs) reads the folded view of the text (owngpt/data/pii.py), so a value that only
    normalising reveals (`１３８１２３４５６７８`, `carol\\u200b@example.org`) is replaced in the raw text too. What the
    quote would become if cleaned is then scrubbed once more: should cleaning reveal a value even so (a value
    split by HTML tags), the quote is the cleaned text instead. Only the head of a huge text is read: up to the
    first character no value can contain after 2 × `limit` characters (a cut there changes no match)."""
    if cfg.scrub_pii:
        stop = _HARD_STOP.search(text, 2 * limit)
        head = text if stop is None else text[:stop.start()]
        text = scrub_pii(head)[0]
        cleaned = normalise(text, cfg)[0]
        if cleaned != text and scrub_pii(cleaned)[1]:
            text = scrub_pii(normalise(head, cfg)[0])[0]
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
        """`text` as a report may quote it: see quoted()."""
        return quoted(text, self.cfg)

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
            ex = {"loc": scrubbed(loc)}  # a file name may hold a phone number
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
