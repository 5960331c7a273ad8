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


@pytest.mark.parametrize("question", ["What are you called?", "I'm curious, what's your name?", "I've a question: who are you",
                                      "Who are you, my friend?"])
def test_pad_slips_english_fillers_between_words(question):
    import random

    from owngpt.persona.questions import FILLERS, pad

    body = question.rstrip("?")
    for seed in range(60):
        out = pad(question, "en", random.Random(seed), words=2)
        assert out == pad(question, "en", random.Random(seed), words=2)  # same seed, same text
        assert out.endswith(question[len(body):]) and out.count("?") == question.count("?")
        got = out.rstrip("?").split(" ")
        assert got[0][:1].isupper()  # the question still starts with a capital ...
        assert ("I" in got or "I'm" in got or "I've" in got) == question.startswith("I")  # ... and "I" keeps its own
        words = body.split(" ")
        lower = {w.lower() for w in words}
        rest = [w for w in got if w.lower() not in lower]  # the fillers, in order (none is a word of the question)
        assert " ".join(rest).lower() in {f"{a} {b}" for a in FILLERS["en"] for b in FILLERS["en"]}  # whole fillers
        it = iter(w.lower() for w in got)
        assert all(w.lower() in it for w in words)  # every word of the question, in order


def test_pad_puts_chinese_fillers_where_they_may_stand():
    import random

    from owngpt.persona.questions import pad

    ones = {pad("你是谁？", "zh", random.Random(seed)) for seed in range(200)}
    assert ones == {"那你是谁？", "那么你是谁？", "话说你是谁？", "顺便问一下，你是谁？", "其实你是谁？",  # openers at the start
                    "你到底是谁？", "你其实是谁？", "你现在是谁？", "你还是谁？",  # adverbs after the subject
                    "你是谁呢？", "你是谁啊？", "你是谁呀？"}  # particles before the question mark
    for seed in range(100):
        greeting = pad("你好", "zh", random.Random(seed), words=2)
        assert greeting.endswith("你好")  # nothing inside 你好, no particle without a question mark
        statement = pad("告诉我你的名字。", "zh", random.Random(seed), words=2)
        assert statement.endswith("告诉我你的名字。")  # 你的: no adverb; a statement: no particle
        twice = pad("你有名字吗？", "zh", random.Random(seed), words=2)
        assert twice.endswith("有名字吗？") and "话说话说" not in twice and "到底到底" not in twice


def test_pad_leaves_questions_without_words_alone():
    import random

    from owngpt.persona.questions import pad

    for text, lang in (("", "en"), ("?", "en"), ("？", "zh"), ("  ", "zh")):
        assert pad(text, lang, random.Random(0), words=2) == text


def test_identity_questions_never_hit_a_held_out_phrasing(monkeypatch):
    # vary composes held-out phrasings from training ones now and then ("hey, " + "What's your name again?"): redrawn
    import random

    from owngpt.persona import identity

    monkeypatch.setattr(identity, "QUESTIONS", {"name": {"en": ["What's your name again?", "Your name?"]}})
    held_out = identity._HELD_OUT
    speaker = identity._Speaker(both(), "en")
    rng = random.Random(0)
    asked = {normalize_question(speaker.question("name", rng)) for _ in range(2000)}
    assert not asked & held_out and len(asked) > 20
    monkeypatch.setattr(identity, "_HELD_OUT", set())  # without the redraw the same draws do hit one
    rng = random.Random(0)
    assert {normalize_question(speaker.question("name", rng)) for _ in range(2000)} & held_out


def test_a_share_of_identity_questions_gets_fillers(monkeypatch):
    from owngpt.persona import identity

    templates = {normalize_question(q) for topic in QUESTIONS.values() for q in topic["en"]}

    def off_template(share: float) -> float:
        monkeypatch.setattr(identity, "PAD_SHARE", share)
        users = [m["content"] for c in identity_conversations(both(), n=2000, seed=0) for m in c
                 if m["role"] == "user" and m["content"].isascii()]
        return sum(normalize_question(u) not in templates for u in users) / len(users)

    share = identity.PAD_SHARE
    plain, padded = off_template(0.0), off_template(share)
    assert plain < 0.15 and 0.2 < padded - plain < 0.45
