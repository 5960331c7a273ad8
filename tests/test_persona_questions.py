"""Held-out name questions (owngpt/persona/questions.py): never a training phrasing, deterministic, per language."""

from __future__ import annotations

import pytest

from owngpt.errors import OwnGPTError
from owngpt.persona import HELDOUT_NAME_QUESTIONS, QUESTIONS, identity_conversations, name_questions, normalize_question
from persona_examples import both


def test_name_questions_are_held_out_from_training():
    p = both()
    training = {normalize_question(m["content"]) for c in identity_conversations(p, n=3000, seed=0)
                for m in c if m["role"] == "user"}
    training |= {normalize_question(q) for topic in QUESTIONS.values() for qs in topic.values() for q in qs}
    for lang in ("en", "zh"):
        questions = name_questions(lang, n=40, seed=0)
        assert len(questions) == 40
        assert questions == name_questions(lang, n=40, seed=0)
        assert set(questions[: len(HELDOUT_NAME_QUESTIONS[lang])]) == set(HELDOUT_NAME_QUESTIONS[lang])
        assert not {normalize_question(q) for q in questions} & training
    with pytest.raises(OwnGPTError):
        name_questions("fr", 3)


@pytest.mark.parametrize("question,lang", [("What are you called?", "en"), ("I'm curious, what's your name?", "en"),
                                           ("你叫什么名字？", "zh"), ("我在和谁说话？", "zh")])
def test_pad_slips_fillers_in_and_keeps_the_question(question, lang):
    import random

    from owngpt.persona.questions import FILLERS, pad

    for seed in range(30):
        out = pad(question, lang, random.Random(seed), words=2)
        assert out == pad(question, lang, random.Random(seed), words=2)  # same seed, same text
        body = question.rstrip("?？.。!！")
        assert out.endswith(question[len(body):]) and out != question  # closing punctuation stays last
        if lang == "en":
            words, got = body.lower().split(" "), out.rstrip("?").lower().split(" ")
            it = iter(got)
            assert all(w in it for w in words)  # every original word, in order
            filler_words = {w for f in FILLERS["en"] for w in f.split(" ")}
            assert len(got) - len(words) >= 2 and all(w in filler_words for w in got if w not in words)
        else:  # one filler at the start, the end or after 你/我/的/是/，
            one = pad(question, lang, random.Random(seed), words=1)
            cuts = [0, len(body), *(i + 1 for i, ch in enumerate(body[:-1]) if ch in "你我的是，,")]
            assert one in {body[:i] + f + body[i:] + question[len(body):] for i in cuts for f in FILLERS["zh"]}
            assert len(out) > len(one)


def test_identity_questions_never_hit_a_held_out_phrasing(monkeypatch):
    # vary/pad can compose a held-out phrasing ("hey, " + "what's your name" + " again"): such draws are redrawn
    from owngpt.persona import identity

    held_out = HELDOUT_NAME_QUESTIONS["en"][0]
    calls = iter([held_out, held_out.lower(), "What is your name?"])
    monkeypatch.setattr(identity, "vary", lambda q, lang, rng: next(calls))
    monkeypatch.setattr(identity, "PAD_SHARE", 0.0)
    import random

    speaker = identity._Speaker(both(), "en")
    assert speaker.question("name", random.Random(0)) == "What is your name?"
