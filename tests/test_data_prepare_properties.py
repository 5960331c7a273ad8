"""A property-based test of `prepare` and its printed report (hypothesis): random Unicode text (brackets and Rich
markup, control characters, lone surrogates escaped in JSON, CJK, emoji, personal data next to any of them, also
written in full-width forms or split by zero-width characters) never raises, every input record is accounted for,
and no original personal value reaches any output file or the terminal, in any form a reader would take for it."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from owngpt.cli.data import print_report  # noqa: E402
from owngpt.data.clean import scrub_pii  # noqa: E402
from owngpt.data.prepare import PrepareConfig, prepare  # noqa: E402
from owngpt.data.report import check_accounting  # noqa: E402

PII = ["bob.jones@example.org", "xiao_ming88@qq.com", "13812345678", "+86 139-8765-4321", "192.168.77.123",
       "2001:db8:85a3::8a2e:370:7334", "4111 1111 1111 1111", "11010519491231002X", "555-867-5309"]
# what may stand right before or after a personal value: nothing that would make it part of a longer token
# (not a control or zero-width character: cleaning removes those, and the value would then touch what is beyond)
EDGES = [" ", "\n", "，", "。", "(", ")", "[", "]", "「", "」", "电话", "邮箱", "🙂", "\t", ": "]
PIECES = ["[/]", "[bold]", "[/bold]", ":smile:", "[link=x]", "\\", "<b>", "&amp;", "\x00", "\x1b[31m", "\u202e",
          "\ufeff", "　", "今天天气很好", "机器学习", "Hello world", "don't", "12:30", "😀👍🏽", "ＡＢＣ１２３", "\r\n"]

# what may hide a value from a scrubber that reads text as written: invisible characters between its characters
# (cleaning removes the zero-width space and BOM, and leaves the joiners, word joiner and soft hyphen), and
# full-width forms (NFKC turns letters and digits into ASCII but keeps ＠．：＋－ as Chinese punctuation)
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]


@st.composite
def perturbed(draw, value: str) -> str:
    """`value` with some characters in full-width form and some invisible characters between them."""
    out = []
    for c in value:
        if "!" <= c <= "~" and draw(st.booleans()):
            c = chr(ord(c) + 0xFEE0)  # ＡＢＣ１２３＠．：
        out.append(c)
        if draw(st.integers(0, 3)) == 0:
            out.append(draw(st.sampled_from(INVISIBLE)))
    return "".join(out)


value = st.sampled_from(PII).flatmap(lambda v: st.one_of(st.just(v), perturbed(v)))
text_part = st.one_of(
    st.text(max_size=30),  # any code points hypothesis likes, control characters included
    st.sampled_from(PIECES),
    st.builds(lambda a, v, b: a + v + b, st.sampled_from(EDGES), value, st.sampled_from(EDGES)),
)
texts = st.lists(text_part, min_size=1, max_size=12).map("".join)


def _revealed(blob: str) -> str:
    """`blob` as a reader takes it: Python escapes (the printed examples are repr()s) decoded, full-width and other
    compatibility forms folded (NFKC), invisible characters dropped."""
    blob = re.sub(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})", lambda m: chr(int(m.group(1)[1:], 16)), blob)
    blob = unicodedata.normalize("NFKC", blob.encode("utf-8", "replace").decode("utf-8"))
    return "".join(c for c in blob if unicodedata.category(c) not in ("Cc", "Cf") or c in "\n\t")


def _no_pii(blob: str, where: str) -> None:
    """No value as itself, in any form: random text beside it can make a longer number ("0" + a card number is 17
    digits and no card), which is not the value and rightly not scrubbed."""
    blob = _revealed(blob)
    for value in PII:
        found = re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", blob)
        assert found is None, f"{value!r} in {where}: ...{blob[max(found.start() - 40, 0):found.end() + 40]!r}..."


def test_the_personal_values_are_ones_the_scrubber_knows():
    for value in PII:
        for a in EDGES:
            assert value not in scrub_pii(a + value + a)[0], (a, value)
    assert _revealed("call 1３8\\u200b1234\u200d5678") == "call 13812345678"  # the check sees through disguises


PLACEHOLDERS = ["<EMAIL>", "<EMAIL>", "<PHONE>", "<PHONE>", "<IP>", "<IP>", "<CARD>", "<ID>", "<PHONE>"]  # of PII


@settings(max_examples=300, deadline=None)
@given(data=st.data(), i=st.integers(0, len(PII) - 1), a=st.sampled_from(EDGES), b=st.sampled_from(EDGES))
def test_the_scrubber_replaces_a_disguised_value_whole_and_nothing_else(data, i, a, b):
    """A value in full-width forms and split by invisible characters becomes its placeholder, and the text around
    it stays as written (only invisible characters at the value's very ends may stay outside)."""
    disguised = data.draw(perturbed(PII[i]))
    out = scrub_pii(a + disguised + b)[0]
    assert _revealed(out) == _revealed(a + PLACEHOLDERS[i] + b)
    assert out.startswith(a) and out.endswith(b)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(docs=st.lists(texts, min_size=1, max_size=6), lines=st.lists(texts, max_size=6),
       surrogate=st.booleans())
def test_prepare_accounts_for_everything_and_leaks_nothing(tmp_path_factory, capsys, monkeypatch, docs, lines,
                                                          surrogate):
    monkeypatch.setenv("COLUMNS", "2000")  # the printed tables do not wrap a value over two lines
    tmp = tmp_path_factory.mktemp("fuzz")
    src = tmp / "in"
    src.mkdir()
    # ordinary documents, so that the train split is never empty after the filters
    for i in range(8):
        (src / f"base{i}.txt").write_text(f"Note {i}: an ordinary note about the garden, the weather and {i * 7} "
                                          "tomatoes that grew this year.", encoding="utf-8")
    for i, t in enumerate(docs):
        (src / f"d{i}.txt").write_bytes(t.encode("utf-8", "surrogatepass"))  # a lone surrogate: invalid UTF-8
    rows = [json.dumps({"text": t}) for t in lines]  # ensure_ascii: surrogates travel as \ud800 escapes
    rows += [json.dumps({"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": t[::-1]}]})
             for t in lines]
    if surrogate:
        rows.append('{"text": "lone \\ud800 surrogate bob.jones@example.org"}')
    (src / "rows.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    n_records = 8 + len(docs) + len(rows)

    report = prepare([str(src)], tmp / "out", PrepareConfig(vocab_size=300, workers=1), progress=False)
    print_report(report, str(tmp / "out"))
    printed = capsys.readouterr()

    check_accounting(report)
    assert report["total"]["records"] == n_records
    _no_pii(printed.out + printed.err, "the printed report")
    for f in (tmp / "out").rglob("*"):
        if f.is_file():
            _no_pii(f.read_bytes().decode("utf-8", "replace"), str(f))
