"""Persona files: loading and field errors, system prompts, identity conversations, held-out name questions."""

from __future__ import annotations

import pytest

from owngpt.errors import OwnGPTError
from owngpt.persona import (
    HELDOUT_NAME_QUESTIONS,
    QUESTIONS,
    Persona,
    identity_conversations,
    list_example_personas,
    load_persona,
    name_questions,
    normalize_question,
    persona_from_dict,
    system_prompt,
)

GOOD = """\
name: Nova
creator: Alex
personality: warm and curious
facts:
  - I love astronomy.
  - 我喜欢唐诗。
languages: [en, zh]
"""


def write(tmp_path, text: str, name: str = "persona.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def both() -> Persona:
    return persona_from_dict({
        "name": "小欧", "creator": "小明", "style": "playful", "languages": ["zh", "en"],
        "personality": {"zh": "热情、耐心", "en": "warm and patient"},
        "facts": {"zh": ["我喜欢秋天。", "我喜欢唐诗。"], "en": ["I like autumn.", "I like Tang poems."]},
    })


# ----------------------------------------------------------------------------- loading


def test_load_yaml_and_plain_strings_follow_their_language(tmp_path):
    p = load_persona(write(tmp_path, GOOD))
    assert p.name == "Nova" and p.creator == "Alex" and p.languages == ["en", "zh"] and p.style == "friendly"
    assert p.fact_list("en") == ["I love astronomy."] and p.fact_list("zh") == ["我喜欢唐诗。"]
    assert p.text("personality", "en") == "warm and curious" and p.text("personality", "zh") == ""


def test_load_markdown_front_matter_body_is_instructions(tmp_path):
    p = load_persona(write(tmp_path, "---\nname: Nova\nlanguages: [en]\n---\n\nAlways answer in one sentence.\n", "p.md"))
    assert p.name == "Nova" and p.instructions == "Always answer in one sentence."
    assert system_prompt(p, "en").endswith("Always answer in one sentence.")
    with pytest.raises(OwnGPTError, match="front matter"):
        load_persona(write(tmp_path, "name: Nova\n", "q.md"))


@pytest.mark.parametrize("text, message", [
    ("creator: Alex\n", r"persona.yaml: 'name' is required"),
    ("name: ''\n", r"persona.yaml:1: 'name' is required"),
    ("name: Nova\nlanguages: en\n", r"persona.yaml:2: 'languages' must be a list of 'en'/'zh'"),
    ("name: Nova\nlanguages: [en, fr]\n", r"persona.yaml:2: 'languages' must be a list of 'en'/'zh'"),
    ("name: Nova\n\nfacts: I like tea\n", r"persona.yaml:3: 'facts' must be a list"),
    ("name: Nova\nstyle: grumpy\n", r"persona.yaml:2: 'style' must be one of friendly, formal, playful, concise"),
    ("name: Nova\ncreater: Alex\n", r"persona.yaml:2: unknown field 'creater'; did you mean 'creator'\?"),
    ("name: Nova\npersonality: {fr: gentil}\n", r"persona.yaml:2: 'personality' must be text or a mapping"),
    ("name: [Nova\n", r"persona.yaml:\d+: not valid YAML"),
    ("- Nova\n", r"persona.yaml: expected a mapping"),
])
def test_errors_name_the_file_line_and_field(tmp_path, text, message):
    with pytest.raises(OwnGPTError, match=message):
        load_persona(write(tmp_path, text))


def test_markdown_error_lines_count_the_opening_dashes(tmp_path):
    with pytest.raises(OwnGPTError, match=r"p.md:3: 'style' must be one of"):
        load_persona(write(tmp_path, "---\nname: Nova\nstyle: grumpy\n---\nbody\n", "p.md"))


def test_missing_file_lists_the_examples(tmp_path):
    with pytest.raises(OwnGPTError, match="example-en"):
        load_persona(tmp_path / "nope.yaml")


def test_example_personas_load_by_path_and_name():
    examples = list_example_personas()
    assert [p.stem for p in examples] == ["example-en", "example-zh"]
    for path in examples:
        p = load_persona(path)
        for lang in p.languages:
            assert p.name in system_prompt(p, lang)
    zh = load_persona("example-zh")
    assert zh.name == "小欧" and zh.languages[0] == "zh"
    assert system_prompt(zh, "zh").startswith("你是小欧，由小明创造的")
    assert system_prompt(zh, "en").startswith("You are 小欧, a helpful AI assistant created by 小明.")


def test_system_prompt_facts_are_optional():
    p = both()
    assert "我喜欢秋天。" not in system_prompt(p, "zh")
    assert "我喜欢秋天。" in system_prompt(p, "zh", facts=True)
    assert system_prompt(p) == system_prompt(p, "zh")  # the first language is the default


# ----------------------------------------------------------------------------- identity conversations


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


def _has_han(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_identity_conversations_cover_both_languages_and_topics():
    p = both()
    convs = identity_conversations(p, n=400, seed=0)
    users = [m["content"] for c in convs for m in c if m["role"] == "user"]
    answers = " ".join(m["content"] for c in convs for m in c if m["role"] == "assistant")
    zh = sum(_has_han(u) for u in users)
    assert 0.35 < zh / len(users) < 0.65
    assert "小明" in answers and "我喜欢秋天。" in answers and "I like Tang poems." in answers and "热情、耐心" in answers
    normalized = {normalize_question(u) for u in users}
    for lang in ("en", "zh"):  # the classic phrasings are in the training set
        for q in QUESTIONS["name"][lang][:3]:
            assert normalize_question(q) in normalized
    assert any(u != u.lower() for u in users) and any(u == u.lower() and not _has_han(u) for u in users)


def test_one_language_persona_stays_in_it_and_never_denies_itself():
    p = persona_from_dict({"name": "Alexa", "languages": ["en"], "facts": ["I like tea."]})
    convs = identity_conversations(p, n=200, seed=1)
    text = " ".join(m["content"] for c in convs for m in c)
    assert not _has_han(text)
    assert "Is your name Alexa?" not in text  # the impostor question about its own name is dropped
    assert "owngpt" in text  # no creator: the answers say how it was made instead


def test_greeting_from_the_persona_gets_the_name():
    p = persona_from_dict({"name": "Nova", "languages": ["en"], "greeting": "Hello there, friend!"})
    greetings = {m[-1]["content"] for m in identity_conversations(p, n=300, seed=0) if m[-2]["content"].rstrip("!").lower() in ("hi", "hello")}
    assert greetings == {"Hello there, friend! I'm Nova."}


# ----------------------------------------------------------------------------- held-out name questions


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
