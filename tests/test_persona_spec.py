"""Persona files (owngpt/persona/spec.py): loading and field errors, the shipped examples, system prompts."""

from __future__ import annotations

import pytest

from owngpt.errors import OwnGPTError
from owngpt.persona import list_example_personas, load_persona, system_prompt
from persona_examples import both

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
