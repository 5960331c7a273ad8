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
