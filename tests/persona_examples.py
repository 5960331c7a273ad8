"""A persona the persona tests share: Chinese first, English second, every field given per language."""

from __future__ import annotations

from owngpt.persona import Persona, persona_from_dict


def both() -> Persona:
    return persona_from_dict({
        "name": "小欧", "creator": "小明", "style": "playful", "languages": ["zh", "en"],
        "personality": {"zh": "热情、耐心", "en": "warm and patient"},
        "facts": {"zh": ["我喜欢秋天。", "我喜欢唐诗。"], "en": ["I like autumn.", "I like Tang poems."]},
    })
