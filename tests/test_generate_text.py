"""Stop strings and streaming: cut before the string, across tokens, never broken UTF-8, stream == batch."""

from __future__ import annotations


import pytest

from gen_fixtures import TEXT, ScriptedLM, model, scripted, tok  # noqa: F401 - fixtures
from owngpt.generate import (
    GenerationConfig,
    generate,
    generate_ids,
    stream_text,
)
from owngpt.tokenizer import train_bpe


def test_stop_strings_cut_the_text_and_end_generation(tok):
    m, p = scripted(tok, "hello world! END of story")
    cfg = GenerationConfig(max_new_tokens=40, temperature=0.0, stop=["END"])
    assert generate(m, tok, ["the"], cfg) == ["hello world! "]
    ids = generate_ids(m, [p], cfg, tokenizer=tok)[0]
    assert tok.decode(ids) == "hello world! END"  # stopped at the token that completed the stop string
    # the earliest of several stop strings wins; a stop string spanning many tokens
    assert generate(m, tok, ["the"], GenerationConfig(max_new_tokens=40, temperature=0, stop=["story", "o w"])) == ["hell"]
    # without a match the text is the whole script, then <|endoftext|> is a stop id
    assert generate(m, tok, ["the"], GenerationConfig(max_new_tokens=40, temperature=0, stop=["xyz"]),
                    stop_ids=[tok.eot_id]) == ["hello world! END of story"]


def test_stop_string_inside_and_across_bpe_tokens():
    bpe = train_bpe([TEXT * 50], vocab_size=300)
    text = "the quick brown fox jumps"
    ids = bpe.encode(text)
    assert any(len(bpe.token_bytes(i)) > 2 for i in ids)  # multi-character tokens
    m = ScriptedLM(ids, 1, bpe.vocab_size)
    for stop, want in (("k bro", "the quic"), ("ui", "the q"), ("jumps", "the quick brown fox ")):
        cfg = GenerationConfig(max_new_tokens=40, temperature=0, stop=[stop])
        out = generate_ids(m, [[bpe.eot_id]], cfg, tokenizer=bpe)[0]
        from owngpt.generate.text import text_of

        assert text_of(bpe, out, [stop]) == want
        assert "".join(stream_text(m, bpe, [bpe.eot_id], cfg)) == want


def test_stream_holds_back_possible_stop_prefixes(tok):
    m, p = scripted(tok, "hello END")
    pieces = list(stream_text(m, tok, p, GenerationConfig(max_new_tokens=40, temperature=0, stop=["ENDx", "END"])))
    assert "".join(pieces) == "hello "
    assert all("E" not in piece for piece in pieces)
    assert len(pieces) > 1  # it streamed as it went
    m, p = scripted(tok, "hello ENough")  # a prefix that never becomes the stop string comes out in the end
    assert "".join(stream_text(m, tok, p, GenerationConfig(max_new_tokens=40, temperature=0, stop=["END"]),
                               stop_ids=[tok.eot_id])) == "hello ENough"


def test_stream_never_yields_broken_utf8(tok):
    text = "你好，世界 🙂 emoji 🎉 and 中文!"
    m, p = scripted(tok, text)  # unseen characters: the char tokenizer spells them as single bytes
    assert len(tok.encode(text)) > len(text)
    pieces = list(stream_text(m, tok, p, GenerationConfig(max_new_tokens=200, temperature=0), stop_ids=[tok.eot_id]))
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece and piece.encode("utf-8").decode("utf-8") == piece for piece in pieces)
    assert len(pieces) > 5
    bpe = train_bpe(["你好，世界 🙂 中文 hello emoji " * 20], vocab_size=290)
    ids = bpe.encode(text)
    m = ScriptedLM(ids, 1, bpe.vocab_size)
    pieces = list(stream_text(m, bpe, [bpe.eot_id], GenerationConfig(max_new_tokens=200, temperature=0),
                              stop_ids=[bpe.eot_id]))
    assert "".join(pieces) == text and all("\ufffd" not in piece for piece in pieces)


@pytest.mark.parametrize("settings", [
    dict(temperature=0.0),
    dict(temperature=1.0, seed=7, stop=["e", "o "]),
    dict(temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.3, seed=1, stop=["the"]),
    dict(temperature=0.0, num_beams=3, stop=["x"]),
])
def test_stream_concatenation_equals_generate(tok, model, settings):
    cfg = GenerationConfig(max_new_tokens=40, **settings)
    for prompt in ("the quick", "hello"):
        want = generate(model, tok, [prompt], cfg, stop_ids=[tok.eot_id])[0]
        got = list(stream_text(model, tok, tok.encode(prompt), cfg, stop_ids=[tok.eot_id]))
        assert "".join(got) == want
        for s in cfg.stop:
            assert s not in want
