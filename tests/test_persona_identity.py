"""Identity conversations (owngpt/persona/identity.py): deterministic, well formed, in the persona's languages."""

from __future__ import annotations

from owngpt.lang import has_han
from owngpt.persona import QUESTIONS, identity_conversations, normalize_question, persona_from_dict
from persona_examples import both


def test_identity_conversations_are_deterministic_and_sized():
    p = both()
    a = identity_conversations(p, n=300, seed=7)
    assert a == identity_conversations(p, n=300, seed=7)
    assert a != identity_conversations(p, n=300, seed=8)
    assert len(a) == 300
    assert len({str(c) for c in a}) > 150  # varied, not one conversation repeated


def test_identity_conversations_structure_and_name():
    p = both()
    convs = identity_conversations(p, n=400, seed=0)
    with_system = 0
    for messages in convs:
        roles = [m["role"] for m in messages]
        if roles[0] == "system":
            with_system += 1
            roles = roles[1:]
        assert roles and roles == ["user", "assistant"] * (len(roles) // 2)
        assert roles[-1] == "assistant"
        assert all(m["content"].strip() for m in messages)
        assert any(p.name in m["content"] for m in messages if m["role"] == "assistant")
    assert 0.3 * len(convs) < with_system < 0.7 * len(convs)
    assert any(len(m) >= 5 for m in convs)  # multi-turn ones exist


def test_identity_conversations_cover_both_languages_and_topics():
    p = both()
    convs = identity_conversations(p, n=1500, seed=0)
    users = [m["content"] for c in convs for m in c if m["role"] == "user"]
    answers = " ".join(m["content"] for c in convs for m in c if m["role"] == "assistant")
    zh = sum(has_han(u) for u in users)
    assert 0.35 < zh / len(users) < 0.65
    assert "小明" in answers and "我喜欢秋天。" in answers and "I like Tang poems." in answers and "热情、耐心" in answers
    normalized = {normalize_question(u) for u in users}
    for lang in ("en", "zh"):  # the classic phrasings are in the training set
        for q in QUESTIONS["name"][lang][:3]:
            assert normalize_question(q) in normalized
    assert any(u != u.lower() for u in users) and any(u == u.lower() and not has_han(u) for u in users)


def test_one_language_persona_stays_in_it_and_never_denies_itself():
    p = persona_from_dict({"name": "Alexa", "languages": ["en"], "facts": ["I like tea."]})
    convs = identity_conversations(p, n=200, seed=1)
    text = " ".join(m["content"] for c in convs for m in c)
    assert not has_han(text)
    assert "Is your name Alexa?" not in text  # the impostor question about its own name is dropped
    assert "owngpt" in text  # no creator: the answers say how it was made instead


def test_greeting_from_the_persona_gets_the_name():
    p = persona_from_dict({"name": "Nova", "languages": ["en"], "greeting": "Hello there, friend!"})
    greetings = {m[-1]["content"] for m in identity_conversations(p, n=300, seed=0) if m[-2]["content"].rstrip("!").lower() in ("hi", "hello")}
    assert greetings == {"Hello there, friend! I'm Nova."}
