"""Persona files: the Persona fields, loading YAML/Markdown with errors by file and line, the default system prompt.

A persona is a YAML file, or Markdown whose YAML front matter holds the fields and whose body is extra
instructions for the system prompt:

    name: Nova                       # required
    creator: Alex                    # who made the assistant
    personality: warm, curious and patient      # a short phrase of traits
    style: friendly                  # friendly | formal | playful | concise: the tone of generated answers
    facts: ["I love astronomy.", "I was trained on a laptop."]    # first-person sentences
    languages: [en, zh]              # languages of the identity conversations; the first is the default
    greeting: "Hi! I'm Nova."        # optional
    instructions: Keep answers short.           # optional extra system prompt text

Text fields (personality, greeting, instructions) may also be a mapping per language ({en: ..., zh: ...})
and facts a mapping of lists, so one persona can speak both languages naturally. A plain string is used
only for the language it is written in (Han characters → zh, else en); the other language falls back to
built-in templates, so an English greeting never appears in a Chinese conversation.
Not handled: languages other than English and Chinese.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from owngpt.errors import OwnGPTError
from owngpt.lang import has_han

LANGS = ("en", "zh")
STYLES = ("friendly", "formal", "playful", "concise")
EXAMPLE_DIR = Path(__file__).parent.parent / "personas"  # owngpt/personas/*.yaml (package data)

Localized = Union[str, dict[str, str]]


@dataclass
class Persona:
    """Who the assistant is. Text fields are a string or a {lang: text} mapping (see `text`)."""

    name: str
    creator: str = ""
    personality: Localized = ""
    style: str = "friendly"
    facts: Union[list[str], dict[str, list[str]]] = field(default_factory=list)
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    greeting: Localized = ""
    instructions: Localized = ""

    def text(self, field_name: str, lang: str) -> str:
        """A text field in `lang`: its `lang` entry, or a plain string written in that language, else ''."""
        value = getattr(self, field_name)
        if isinstance(value, dict):
            return value.get(lang, "")
        return value if value and _written_in(value, lang) else ""

    def fact_list(self, lang: str) -> list[str]:
        """Facts in `lang`: the `lang` list of a mapping, or the plain facts written in that language."""
        if isinstance(self.facts, dict):
            return list(self.facts.get(lang, []))
        return [f for f in self.facts if _written_in(f, lang)]


def _written_in(text: str, lang: str) -> bool:
    """Chinese text has Han characters; anything else counts as English. Keeps an English greeting out of
    Chinese conversations (the built-in Chinese templates are used instead)."""
    return has_han(text) == (lang == "zh")


# ----------------------------------------------------------------------------- loading


_FIELDS = ("name", "creator", "personality", "style", "facts", "languages", "greeting", "instructions")


def list_example_personas() -> list[Path]:
    """The persona files shipped with owngpt (usable by name, e.g. `--persona example-zh`)."""
    return sorted(EXAMPLE_DIR.glob("*.yaml"))


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.exists():
        return p
    if not p.suffix and (EXAMPLE_DIR / f"{p.name}.yaml").exists():
        return EXAMPLE_DIR / f"{p.name}.yaml"
    examples = ", ".join(q.stem for q in list_example_personas())
    raise OwnGPTError(f"persona file {path} does not exist (examples shipped with owngpt: {examples})")


def _split_front_matter(text: str, where: str) -> tuple[str, str, int]:
    """(yaml text, markdown body, line offset of the yaml) of a Markdown file with --- front matter."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise OwnGPTError(f"{where}: a Markdown persona must start with '---' and YAML front matter (name: ..., ...)")
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1:]).strip(), 1
    raise OwnGPTError(f"{where}: the YAML front matter is not closed by a '---' line")


def _key_lines(text: str, offset: int) -> dict[str, int]:
    """1-based line of every top-level key, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 + offset for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def load_persona(path: str | Path) -> Persona:
    """Read a persona YAML (or Markdown with YAML front matter) file; an example's name also works."""
    p = _resolve(path)
    where = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise OwnGPTError(f"{where}: not UTF-8 text") from None
    body, offset = "", 0
    if p.suffix.lower() in (".md", ".markdown"):
        text, body, offset = _split_front_matter(text, where)
    try:
        data = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1 + offset}" if mark is not None else ""
        raise OwnGPTError(f"{where}{line}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OwnGPTError(f"{where}: expected a mapping of fields (name: ..., creator: ...), not {type(data).__name__}")
    if body:
        if data.get("instructions"):
            raise OwnGPTError(f"{where}: give 'instructions' either in the front matter or as the Markdown body, not both")
        data["instructions"] = body
    return persona_from_dict(data, where, _key_lines(text, offset))


def persona_from_dict(data: dict[str, Any], where: str = "persona", lines: dict[str, int] | None = None) -> Persona:
    """Validate plain data into a Persona; errors name the file, line and field."""
    lines = lines or {}

    def fail(key: str, message: str) -> OwnGPTError:
        line = f":{lines[key]}" if key in lines else ""
        return OwnGPTError(f"{where}{line}: {message}")

    for key in data:
        if key not in _FIELDS:
            close = difflib.get_close_matches(str(key), _FIELDS, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid fields: {', '.join(_FIELDS)}"
            raise fail(key, f"unknown field {key!r}{hint}")
    name = data.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        raise fail("name", "'name' is required (the assistant's name, e.g. name: Nova)")
    if not isinstance(name, (str, int)):
        raise fail("name", f"'name' must be text, not {type(name).__name__}")
    creator = data.get("creator") or ""
    if not isinstance(creator, (str, int)):
        raise fail("creator", f"'creator' must be text, not {type(creator).__name__}")

    languages = data.get("languages", ["en", "zh"])
    if (not isinstance(languages, list) or not languages or any(lang not in LANGS for lang in languages)
            or len(set(languages)) != len(languages)):
        raise fail("languages", f"'languages' must be a list of 'en'/'zh' (e.g. [en, zh]), not {languages!r}")

    def localized(key: str) -> Localized:
        value = data.get(key) or ""
        if isinstance(value, dict):
            bad = [k for k in value if k not in LANGS]
            if bad or not all(isinstance(v, str) for v in value.values()):
                raise fail(key, f"'{key}' must be text or a mapping of 'en'/'zh' to text, not {value!r}")
            return {k: v.strip() for k, v in value.items()}
        if not isinstance(value, (str, int, float)):
            raise fail(key, f"'{key}' must be text or a mapping of 'en'/'zh' to text, not {value!r}")
        return str(value).strip()

    facts = data.get("facts") or []
    fact_error = f"'facts' must be a list of sentences or a mapping of 'en'/'zh' to lists, not {facts!r}"
    if isinstance(facts, dict):
        if any(k not in LANGS for k in facts) or not all(_str_list(v) for v in facts.values()):
            raise fail("facts", fact_error)
        facts = {k: [s.strip() for s in v] for k, v in facts.items()}
    elif _str_list(facts):
        facts = [s.strip() for s in facts]
    else:
        raise fail("facts", fact_error)

    style = data.get("style") or "friendly"
    if style not in STYLES:
        raise fail("style", f"'style' must be one of {', '.join(STYLES)}, not {style!r}")
    return Persona(name=str(name).strip(), creator=str(creator).strip(), personality=localized("personality"),
                   style=style, facts=facts, languages=list(languages), greeting=localized("greeting"),
                   instructions=localized("instructions"))


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) and s.strip() for s in value)


# ----------------------------------------------------------------------------- system prompt


_STYLE_WORDS = {
    "en": {"friendly": "warm and friendly", "formal": "polite and formal", "playful": "playful and lively", "concise": "brief and direct"},
    "zh": {"friendly": "亲切友好", "formal": "礼貌正式", "playful": "活泼俏皮", "concise": "简洁直接"},
}
# The sentences of the system prompt per language; "join" goes between sentences and between facts.
_PROMPT = {
    "en": {"made": "You are {name}, a helpful AI assistant created by {creator}.",
           "alone": "You are {name}, a helpful AI assistant.", "personality": "You are {personality}.",
           "tone": "Your tone is {style}.", "facts": "About you: ", "stop": ".", "join": " "},
    "zh": {"made": "你是{name}，由{creator}创造的人工智能助手。", "alone": "你是{name}，一个乐于助人的人工智能助手。",
           "personality": "你的性格：{personality}。", "tone": "说话风格{style}。", "facts": "关于你：", "stop": "。", "join": ""},
}


def system_prompt(persona: Persona, lang: str | None = None, *, facts: bool = False) -> str:
    """The default system prompt in English ('en') or Chinese ('zh'); short, since small models have small
    contexts. With facts=True the persona's facts are listed too."""
    lang = lang or persona.languages[0]
    if lang not in LANGS:
        raise OwnGPTError(f"system prompt language must be 'en' or 'zh', not {lang!r}")
    t = _PROMPT[lang]
    personality, extra = persona.text("personality", lang), persona.text("instructions", lang)
    parts = [t["made" if persona.creator else "alone"].format(name=persona.name, creator=persona.creator)]
    if personality:
        parts.append(t["personality"].format(personality=personality.rstrip(t["stop"])))
    parts.append(t["tone"].format(style=_STYLE_WORDS[lang][persona.style]))
    if facts and persona.fact_list(lang):
        parts.append(t["facts"] + t["join"].join(persona.fact_list(lang)))
    if extra:
        parts.append(extra)
    return t["join"].join(parts)
