"""Tests for owngpt/data/clean.py and owngpt/data/pii.py: each step, PII scrubbing on crafted positives and negatives
(in every form cleaning would reveal), the counting Cleaner and what a report may quote."""

from __future__ import annotations

import json
import unicodedata

import pytest

from owngpt.data import clean, pii
from owngpt.data.clean import (
    CleanConfig,
    Cleaner,
    clean_text,
    dup_line_ratio,
    luhn_ok,
    nfkc,
    normalise_whitespace,
    quoted,
    scrub_pii,
    strip_html,
    top_char_ratio,
)
from owngpt.data.pii import fold_tables


@pytest.mark.parametrize("text, expected, kinds", [
    ("write to zhang.san+work@mail.example.com.cn today", "write to <EMAIL> today", ["pii_email"]),
    ("手机13812345678，", "手机<PHONE>，", ["pii_phone"]),
    ("电话 +86 138-1234-5678", "电话 <PHONE>", ["pii_phone"]),
    ("call 138 1234 5678 now", "call <PHONE> now", ["pii_phone"]),
    ("office +44 20 7946 0958.", "office <PHONE>.", ["pii_phone"]),
    ("US (555) 123-4567 or +1 555 123 4567", "US <PHONE> or <PHONE>", ["pii_phone"]),
    ("座机 010-12345678", "座机 <PHONE>", ["pii_phone"]),
    ("身份证号 11010519491231002X。", "身份证号 <ID>。", ["pii_id"]),
    ("card 4111 1111 1111 1111 ok", "card <CARD> ok", ["pii_card"]),
    ("卡号6222-0202-0002-9999-3", None, None),  # decided below by Luhn
    ("host 192.168.1.10.", "host <IP>.", ["pii_ip"]),
    ("v6 2001:db8::8a2e:370:7334 end", "v6 <IP> end", ["pii_ip"]),
])
def test_scrub_positives(text, expected, kinds):
    out, found = scrub_pii(text)
    if expected is None:
        digits = "".join(c for c in text if c.isdigit())
        assert ("<CARD>" in out) == luhn_ok(digits)
        return
    assert out == expected
    assert found == kinds


@pytest.mark.parametrize("text", [
    "会议在 2024-01-15 14:30:00 开始，1999年出生，价格 ¥1,299.00，$12,345,678.90。",
    "身份证号 110105194912310021 (wrong check digit)",
    "card 4111 1111 1111 1112 fails Luhn",
    "order 20240115123045 and ISBN 978-3-16-148410-0",
    "256.1.1.1 is not an address, version 1.2.3, std::vector and a::b, 12:30:45",
    "population 1400000000 people; pi 3.14159265358979",
    "email-like a@b but no domain; @handle",
])
def test_scrub_negatives(text):
    out, found = scrub_pii(text)
    assert out == text and found == []


def test_id_checksum_and_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert scrub_pii("11010519491231002x")[0] == "<ID>"  # lower-case check character


def test_nfkc_keeps_chinese_punctuation_by_default():
    text = "ＡＢＣ１２３　你好，世界！（测试）"
    assert nfkc(text) == "ABC123 你好，世界！（测试）"
    assert nfkc(text, keep_cjk_punct=False) == "ABC123 你好,世界!(测试)"
    assert nfkc("已经规范。") == "已经规范。"
    out, changes, _ = clean_text("ｆｕｌｌ width", CleanConfig())
    assert out == "full width" and "nfkc" in changes
    assert clean_text("ＡＢ", CleanConfig(nfkc=False))[0] == "ＡＢ"


def test_control_chars_and_whitespace():
    out, changes, reason = clean_text("a\x00b\u200bc\ufeff  d\t\te   \r\n\n\n\nf", CleanConfig())
    assert out == "abc d e\n\nf" and reason is None
    assert changes == ["control_chars", "whitespace"]
    assert normalise_whitespace("def f():\n    return 1  \n") == "def f():\n    return 1"  # indentation kept


def test_html_strip_is_off_by_default():
    html = "<p>Hello &amp; <b>world</b></p><script>var x = 1;</script><div>next</div>"
    assert clean_text(html, CleanConfig())[0] == html
    assert clean_text(html, CleanConfig(strip_html=True))[0] == "Hello & world\n\nnext"
    assert strip_html("no tags, 3 < 4 & 5 > 2") == "no tags, 3 < 4 & 5 > 2"


def test_length_and_junk_filters():
    cfg = CleanConfig(min_chars=5, max_chars=20)
    assert clean_text("   ", cfg)[2] == "empty"
    assert clean_text("abc", cfg)[2] == "min_chars"
    assert clean_text("x" * 10 + "y" * 11, cfg)[2] == "max_chars"
    assert clean_text("哈" * 30, CleanConfig())[2] == "junk_chars"
    assert clean_text("buy now\nbuy now\nbuy now\nok", CleanConfig())[2] == "junk_lines"
    assert clean_text("aab" * 300, CleanConfig())[2] == "junk_chars"  # long text: sampled, then counted exactly
    assert clean_text("buy now\nbuy now\nbuy now\nok", CleanConfig(junk_filter=False))[2] is None
    assert clean_text("今天天气很好，我们去公园散步吧。", CleanConfig())[2] is None
    assert dup_line_ratio("a\nb\na") == pytest.approx(1 / 3)
    assert top_char_ratio("aaab") == 0.75


def test_cleaner_counts_and_examples():
    c = Cleaner(CleanConfig(), examples=2)
    texts = [f"mail {i}@example.com" for i in range(3)] + ["", "fine text"]
    outs = [c(t, f"f.txt:{i}") for i, t in enumerate(texts)]
    assert outs[0] == ("mail <EMAIL>", True) and outs[3] == (None, False) and outs[4] == ("fine text", False)
    rep = c.report()
    assert rep["pii_email"]["changed"] == 3 and len(rep["pii_email"]["examples"]) == 2
    # examples come from scrubbed text only: a pii_* example shows the text after scrubbing, never the value
    assert rep["pii_email"]["examples"][0] == {"loc": "f.txt:0", "after": "mail <EMAIL>"}
    assert rep["empty"]["removed"] == 1
    assert c.message("好", "x")[0] == "好"  # messages are never removed as short or junk


def test_scrub_next_to_chinese_characters():
    assert scrub_pii("邮箱zhang@example.com谢谢")[0] == "邮箱<EMAIL>谢谢"
    assert scrub_pii("地址2001:db8::1:2结束")[0] == "地址<IP>结束"


def test_top_char_ratio_long_texts_counted_exactly():
    text = ("ab" * 200) + ("x" * 500) + ("\n \t" * 50)  # 900 non-space characters, 'x' 500 of them
    assert top_char_ratio(text) == pytest.approx(500 / 900)
    assert top_char_ratio("中文" * 300 + "😀" * 700) == pytest.approx(700 / 1300)


def test_report_examples_never_quote_personal_data():
    """Every filter's example (whitespace, junk, removed documents) shows the text scrubbed, and a value cut in
    half by the snippet limit is scrubbed before the cut, not after."""
    c = Cleaner(CleanConfig(min_chars=40), examples=3)
    c("call  13812345678   now", "a.txt")  # whitespace + pii_phone
    c("x@example.com", "b.txt")  # removed: too short after scrubbing
    c("line\nline\nline\nline 192.168.77.123", "c.txt")  # junk_lines
    c(("y" * 195) + " alice@example.com and more text after it", "d.txt")  # the e-mail straddles the 200-char cut
    blob = json.dumps(c.report(), ensure_ascii=False)
    for value in ("13812345678", "x@example.com", "192.168.77.123", "alice@", "alice"):
        assert value not in blob
    assert "<PHONE>" in blob and "whitespace" in c.report()


@pytest.mark.parametrize("text, want", [
    ("ref 0 4111 1111 1111 1111", "ref 0 <CARD>"),  # a stray digit group before the card used to hide it
    ("0000 4111 1111 1111 1111", "0000 <CARD>"),
    ("4111 1111 1111 1111 5555 5555 5555 4444", "<CARD> <CARD>"),  # two cards in one run of digit groups
    ("12 3782 822463 10005", "12 <CARD>"),  # Amex grouping
    ("1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0", "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0"),  # a digit list
    ("IP 2001:db8:85a3::8a2e:370:7334: up", "IP <IP>: up"),  # a colon after the address
    ("std::vector::push_back and 12:30:45", "std::vector::push_back and 12:30:45"),
])
def test_scrubbing_finds_values_beside_other_digits_and_colons(text, want):
    assert scrub_pii(text)[0] == want


# ----------------------------------------------------------------------------- values in other forms (issue #12)

@pytest.mark.parametrize("text, want", [
    ("Write bob＠example．org now", "Write <EMAIL> now"),  # full-width @ and . that NFKC keeps (Chinese punctuation)
    ("Contact ｂｏｂ＠ｅｘａｍｐｌｅ．ｏｒｇ please", "Contact <EMAIL> please"),
    ("手机１３８１２３４５６７８，谢谢", "手机<PHONE>，谢谢"),
    ("call 138\u200b1234\u200b5678 now", "call <PHONE> now"),  # zero-width spaces inside the value
    ("mail carol\u200d@exa\u2060mple.org\u00ad ok", "mail <EMAIL>\u00ad ok"),  # joiner, word joiner inside
    ("host 10.1.2\u200b.3 up", "host <IP> up"),
    ("v6 ２００１：ｄｂ８：：１ end", "v6 <IP> end"),
    ("bold 𝟏𝟑𝟖𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖 😀", "bold <PHONE> 😀"),  # mathematical digits, beside an emoji
    ("call 138  1234\u00a05678\ttoday", "call <PHONE>\ttoday"),  # odd and repeated spaces
    ("价格：（５％）不变，bob＠example．org！", "价格：（５％）不变，<EMAIL>！"),  # the rest stays as written
    ("(555-867-5309 or", "(<PHONE> or"),  # an unpaired parenthesis before a number is not part of it
])
def test_scrubber_reads_values_in_any_form_cleaning_would_reveal(text, want):
    assert scrub_pii(text)[0] == want


def test_cleaned_text_holds_no_full_width_e_mail():
    """NFKC keeps full-width ＠ and ． (Chinese punctuation) by default: the value used to reach the training data."""
    out, changes, _ = clean_text("Write bob＠example．org or 138\u200c1234\u200c5678 now.", CleanConfig())
    assert out == "Write <EMAIL> or <PHONE> now." and {"pii_email", "pii_phone"} <= set(changes)


def _revealed(blob: str) -> str:
    """What a reader sees in `blob` once full-width forms and invisible characters are taken for what they are."""
    blob = unicodedata.normalize("NFKC", blob)
    return "".join(c for c in blob if unicodedata.category(c) not in ("Cc", "Cf") or c in "\n\t")


def test_report_examples_quote_no_value_that_only_normalising_reveals():
    c = Cleaner(CleanConfig(), examples=3)
    c("Mail carol\u200b@example.org or 139\u200b87654321 or 10.1.2\u200b.3 please, more words.\n", "b.txt")
    c("Contact ｂｏｂ＠ｅｘａｍｐｌｅ．ｏｒｇ or １３８１２３４５６７８ please, more words.\n", "a.txt")
    c("line\nline\nline\nline bob＠example．org", "c.txt")  # removed as junk: its "before" is quoted
    blob = _revealed(json.dumps(c.report(), ensure_ascii=False))
    for value in ("carol@example.org", "13987654321", "10.1.2.3", "bob@example.org", "13812345678", "carol", "bob"):
        assert value not in blob, value
    assert c.report()["nfkc"]["examples"][0]["before"].startswith("Contact <EMAIL> or <PHONE>")


def test_quoted_uses_the_cleaned_text_when_only_full_cleaning_reveals_a_value():
    cfg = CleanConfig(strip_html=True)
    text = "mail carol<b></b>@example.org now"  # the tags hide the value from the scrubber until they are removed
    assert "@example.org" in scrub_pii(text)[0]
    assert quoted(text, cfg) == "mail <EMAIL> now"
    assert quoted(text, CleanConfig()) == text  # without --strip-html the cleaned text keeps the tags: no value


def test_quoted_reads_only_the_head_of_a_huge_text_and_never_half_a_value():
    cfg = CleanConfig()
    text = "y" * 395 + " alice.smith@example.com 的 " + "z" * 5_000_000
    out = quoted(text, cfg)
    assert out == "y" * 200 + "…"
    tail = quoted("x" * 190 + " 13812345678 tail", cfg, limit=200)
    assert "1381" not in tail and "<PHONE>" in tail


def test_fold_tables_cover_all_of_unicode():
    """The folded view is built from a few blocks; a scan of every code point finds nothing outside them."""
    same, other = fold_tables()
    found_same, found_other = {0x09: " "}, {}
    for cp in range(0x110000):
        c = chr(cp)
        if pii._invisible(c):
            found_other[c] = ""
        elif cp >= 0x80:
            n = " " if c.isspace() and c not in "\n\r" else unicodedata.normalize("NFKC", c)
            if n != c and n and set(n) <= pii._READ:
                (found_same.__setitem__(cp, n) if len(n) == 1 else found_other.__setitem__(c, n))
    assert same == found_same and other == found_other


def test_a_report_may_cut_a_text_before_any_hard_stop():
    """quoted() cuts a huge text before a character no value can hold in any form the scrubber reads."""
    same, other = fold_tables()
    stops = [chr(cp) for cp in range(0x10000) if clean._HARD_STOP.match(chr(cp))]
    assert "\n" in stops and "的" in stops and "。" in stops and "\u3000" not in stops
    for c in stops:
        assert ord(c) not in same and c not in other and c not in pii._READ, repr(c)


def test_top_char_ratio_counts_huge_texts_in_pieces(monkeypatch):
    monkeypatch.setattr(clean, "_COUNT_PIECE", 7)
    text = "ab" * 200 + "中" * 301 + "\n \t" * 50
    assert top_char_ratio(text) == pytest.approx(301 / 701)
