"""Persona stage: persona files and the system prompt (spec.py), identity conversations (identity.py), questions."""

from owngpt.persona.identity import ANSWERS, identity_conversations
from owngpt.persona.questions import HELDOUT_NAME_QUESTIONS, QUESTIONS, name_questions, normalize_question
from owngpt.persona.spec import (
    EXAMPLE_DIR,
    LANGS,
    STYLES,
    Localized,
    Persona,
    list_example_personas,
    load_persona,
    persona_from_dict,
    system_prompt,
)

__all__ = [
    "ANSWERS", "EXAMPLE_DIR", "HELDOUT_NAME_QUESTIONS", "LANGS", "Localized", "Persona", "QUESTIONS", "STYLES",
    "identity_conversations", "list_example_personas", "load_persona", "name_questions", "normalize_question",
    "persona_from_dict", "system_prompt",
]
