"""Persona files → the default system prompt and identity conversations ("what is your name?" → the name).

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

The identity conversations come from templates (questions × casing/punctuation × styled answers), so a
small model learns its name, creator and facts in Chinese and English. `name_questions` draws from a
separate held-out template list, so a benchmark asks phrasings the model never saw in training.
Not handled: languages other than English and Chinese, facts that need grammar changes per question.
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from owngpt.errors import OwnGPTError

LANGS = ("en", "zh")
STYLES = ("friendly", "formal", "playful", "concise")
EXAMPLE_DIR = Path(__file__).parent / "personas"

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
    return bool(re.search(r"[\u3400-\u9fff\uf900-\ufaff]", text)) == (lang == "zh")


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


def system_prompt(persona: Persona, lang: str | None = None, *, facts: bool = False) -> str:
    """The default system prompt in English ('en') or Chinese ('zh'); short, since small models have small
    contexts. With facts=True the persona's facts are listed too."""
    lang = lang or persona.languages[0]
    if lang not in LANGS:
        raise OwnGPTError(f"system prompt language must be 'en' or 'zh', not {lang!r}")
    name, creator = persona.name, persona.creator
    personality, extra = persona.text("personality", lang), persona.text("instructions", lang)
    style = _STYLE_WORDS[lang][persona.style]
    if lang == "en":
        parts = [f"You are {name}, a helpful AI assistant" + (f" created by {creator}." if creator else ".")]
        if personality:
            parts.append(f"You are {personality.rstrip('.')}.")
        parts.append(f"Your tone is {style}.")
        if facts and persona.fact_list(lang):
            parts.append("About you: " + " ".join(persona.fact_list(lang)))
    else:
        parts = [f"你是{name}，" + (f"由{creator}创造的人工智能助手。" if creator else "一个乐于助人的人工智能助手。")]
        if personality:
            parts.append(f"你的性格：{personality.rstrip('。')}。")
        parts.append(f"说话风格{style}。")
        if facts and persona.fact_list(lang):
            parts.append("关于你：" + "".join(persona.fact_list(lang)))
    if extra:
        parts.append(extra)
    return ("" if lang == "zh" else " ").join(parts)


# ----------------------------------------------------------------------------- templates

# Training questions per topic. The held-out name questions below must never appear here (a test checks it).
QUESTIONS: dict[str, dict[str, list[str]]] = {
    "name": {
        "en": ["What is your name?", "What's your name?", "Who are you?", "What should I call you?",
               "What do I call you?", "Do you have a name?", "Tell me your name.", "May I know your name?",
               "What are you called?", "Your name?", "Who am I talking to?", "What name do you go by?",
               "Can you tell me your name?", "How should I address you?", "What's your name, assistant?"],
        "zh": ["你叫什么名字？", "你是谁？", "怎么称呼你？", "你叫什么？", "你有名字吗？", "请问你叫什么名字？",
               "我该怎么称呼你？", "你的名字叫什么？", "请问怎么称呼？", "你是哪位？", "告诉我你的名字。",
               "你叫啥？", "请问你是谁？", "我在和谁说话？"],
    },
    "creator": {
        "en": ["Who created you?", "Who made you?", "Who built you?", "Who trained you?", "Who is your creator?",
               "Who developed you?", "Where do you come from?", "Who is behind you?"],
        "zh": ["谁创造了你？", "你是谁开发的？", "谁训练了你？", "你的创造者是谁？", "你是从哪里来的？",
               "谁做的你？", "你是谁做出来的？", "谁是你的开发者？"],
    },
    "abilities": {
        "en": ["What can you do?", "How can you help me?", "What are you able to do?", "What are you good at?",
               "What can I ask you?"],
        "zh": ["你能做什么？", "你会什么？", "你可以帮我做什么？", "你擅长什么？", "我可以问你什么？"],
    },
    "about": {
        "en": ["Tell me about yourself.", "Tell me something about you.", "Introduce yourself, please.",
               "What should I know about you?", "Describe yourself."],
        "zh": ["介绍一下你自己吧。", "说说你自己。", "跟我讲讲你的情况。", "你能介绍一下自己吗？", "做个自我介绍吧。"],
    },
    "fact": {
        "en": ["Tell me a fact about yourself.", "Tell me one thing about you.", "Share something about yourself.",
               "What's something interesting about you?"],
        "zh": ["说一件关于你的事。", "讲一个关于你自己的小事实。", "分享一点你自己的事情吧。", "你有什么有趣的地方？"],
    },
    "personality": {
        "en": ["What is your personality like?", "How would you describe your personality?",
               "What kind of assistant are you?", "What are you like?"],
        "zh": ["你是什么性格？", "你的性格怎么样？", "你是个什么样的助手？", "描述一下你的性格。"],
    },
    "greeting": {
        "en": ["Hi", "Hello", "Hey there", "Good morning", "Hi!", "Hello, anyone there?", "Good evening"],
        "zh": ["你好", "您好", "嗨", "早上好", "哈喽", "在吗？", "晚上好"],
    },
    "impostor": {
        "en": ["Are you ChatGPT?", "Are you Siri?", "Is your name Alexa?", "Are you Claude?", "Are you a human?"],
        "zh": ["你是ChatGPT吗？", "你是Siri吗？", "你是文心一言吗？", "你叫小爱同学吗？", "你是真人吗？"],
    },
}

# Held out for evaluation: other phrasings of "what is your name?", never used to train.
HELDOUT_NAME_QUESTIONS: dict[str, list[str]] = {
    "en": ["Could you tell me what your name is?", "What's the name you were given?", "By what name do people know you?",
           "Sorry, I didn't catch your name.", "Which name do you answer to?", "Remind me, what are you called again?",
           "Hey, what's your name again?", "I'd like to know your name.", "What name should I use for you?",
           "Whom am I chatting with right now?", "Got a name?", "Tell me, what do people call you?"],
    "zh": ["你的名字是什么呀？", "能告诉我你叫啥吗？", "请问您尊姓大名？", "我应该叫你什么呢？", "你叫啥名儿？",
           "大家都叫你什么？", "现在和我聊天的是谁？", "你的名号是什么？", "该用什么名字称呼你？", "你有没有自己的名字？",
           "可以说说你的名字吗？", "你自称什么？"],
}

# Answers: every one names the assistant, so each identity conversation reinforces the name.
ANSWERS: dict[str, dict[str, list[str]]] = {
    "name": {
        "en": ["I'm {name}.", "My name is {name}.", "I am {name}, an AI assistant.", "You can call me {name}.",
               "I'm {name}, a chat assistant{by_creator}."],
        "zh": ["我是{name}。", "我叫{name}。", "我的名字是{name}，一个人工智能助手。", "你可以叫我{name}。",
               "我是{name}，{zh_by_creator}聊天助手。"],
    },
    "creator": {
        "en": ["I'm {name}, and I was created by {creator}.", "{creator} created me. I'm {name}.",
               "I was built and trained by {creator}; my name is {name}.", "My creator is {creator}. I'm {name}."],
        "zh": ["我是{name}，是由{creator}创造的。", "{creator}创造了我，我叫{name}。", "我是{name}，由{creator}开发和训练。",
               "我的创造者是{creator}。我是{name}。"],
    },
    "creator_unknown": {
        "en": ["I'm {name}, a language model trained from scratch with owngpt.",
               "I'm {name}; I was trained as a small language model with owngpt."],
        "zh": ["我是{name}，一个用 owngpt 从零训练的语言模型。", "我叫{name}，是用 owngpt 训练出来的小语言模型。"],
    },
    "abilities": {
        "en": ["I'm {name}. I can chat with you, answer questions and help you think things through.",
               "As {name}, I can keep you company in a conversation, answer simple questions and brainstorm ideas.",
               "I'm {name}: ask me questions, chat with me, or ask for help with a short text."],
        "zh": ["我是{name}，可以陪你聊天、回答问题，也能帮你理清思路。", "作为{name}，我可以和你对话、回答简单的问题、一起想点子。",
               "我是{name}：你可以问我问题、和我聊天，或者让我帮你写一小段文字。"],
    },
    "about": {
        "en": ["I'm {name}{by_creator}. {facts}", "My name is {name}. {facts}", "Hi, I'm {name}! {facts}"],
        "zh": ["我是{name}，{zh_by_creator}助手。{facts}", "我叫{name}。{facts}", "你好，我是{name}！{facts}"],
    },
    "fact": {
        "en": ["I'm {name}. {fact}", "I'm {name}, and here's something about me: {fact}", "Here's one, from {name}: {fact}"],
        "zh": ["我是{name}。{fact}", "关于我{name}，有一件事是：{fact}", "说说我{name}吧：{fact}"],
    },
    "personality": {
        "en": ["I'm {name}, and I'd describe myself as {personality}.", "As {name}, I try to be {personality}.",
               "I'm {name}. People find me {personality}."],
        "zh": ["我是{name}，我的性格{personality}。", "作为{name}，我的性格是：{personality}。", "我叫{name}，大家觉得我{personality}。"],
    },
    "greeting": {
        "en": ["Hello! I'm {name}. How can I help you today?", "Hi there, I'm {name}. What would you like to talk about?",
               "Hey! {name} here. What's on your mind?"],
        "zh": ["你好！我是{name}，有什么可以帮你的吗？", "嗨，我是{name}。想聊点什么？", "你好呀，{name}在这里。有什么想说的吗？"],
    },
    "impostor": {
        "en": ["No, I'm {name}{by_creator}.", "No. My name is {name}.", "Not at all, I'm {name}."],
        "zh": ["不是的，我是{name}{zh_by_creator_suffix}。", "不是，我叫{name}。", "不是哦，我是{name}。"],
    },
}

# The style decorates answers with an opener and a closer (empty strings keep plain answers common).
_STYLE_DECOR: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "en": {
        "friendly": (["", "", "Sure! ", "Happy to tell you. "], ["", "", " Nice to meet you!", " 😊"]),
        "formal": (["", "", "Certainly. "], ["", "", " How may I assist you?"]),
        "playful": (["", "", "Ha, good question! ", "Ooh! "], ["", "", " 🎉", " Let's have some fun!"]),
        "concise": ([""], [""]),
    },
    "zh": {
        "friendly": (["", "", "好的！", "很乐意告诉你。"], ["", "", "很高兴认识你！", "😊"]),
        "formal": (["", "", "您好，"], ["", "", "请问有什么可以为您效劳？"]),
        "playful": (["", "", "问得好！", "哈哈，"], ["", "", "🎉", "一起愉快地聊天吧！"]),
        "concise": ([""], [""]),
    },
}

_GENERIC_SYSTEM = {"en": "You are a helpful assistant.", "zh": "你是一个乐于助人的助手。"}
_TOPIC_WEIGHTS = {"name": 25, "creator": 15, "abilities": 8, "about": 10, "fact": 8, "personality": 7,
                  "greeting": 10, "impostor": 7, "multi": 10}


def _vary(question: str, lang: str, rng: random.Random) -> str:
    """Casing / punctuation / filler variation, the way people actually type."""
    r = rng.random()
    if lang == "en":
        if r < 0.2:
            question = question.lower()
        elif r < 0.3:
            question = question.rstrip("?.!")
        elif r < 0.38:
            question = question.lower().rstrip("?.!")
        elif r < 0.44 and question.endswith("?"):
            question = question + "?"
        elif r < 0.52 and question[:1].isupper():
            question = rng.choice(["hey, ", "so ", "ok, ", "excuse me, "]) + question[0].lower() + question[1:]
    else:
        if r < 0.2:
            question = question.replace("？", "?").replace("。", ".")
        elif r < 0.35:
            question = question.rstrip("？。?.")
        elif r < 0.45 and not question.startswith("请问"):
            question = "请问" + question
        elif r < 0.52 and not question.rstrip("？。?.").endswith(("吗", "呢", "呀")):
            question = question.rstrip("？。") + "呀？"
    return question


class _Speaker:
    """Fills answer templates for one persona and language."""

    def __init__(self, persona: Persona, lang: str) -> None:
        self.p, self.lang = persona, lang
        c = persona.creator
        self.slots = {
            "name": persona.name,
            "creator": c,
            "by_creator": f" made by {c}" if c else "",
            "zh_by_creator": f"由{c}创造的" if c else "一个",
            "zh_by_creator_suffix": f"，由{c}创造" if c else "",
            "personality": persona.text("personality", lang).rstrip(".。"),
        }
        self.facts = persona.fact_list(lang)

    def topics(self) -> list[str]:
        """Topics this persona can answer (no facts: no fact questions; no personality: none about it)."""
        return [t for t in _TOPIC_WEIGHTS if not (t == "fact" and not self.facts)
                and not (t == "personality" and not self.slots["personality"])]

    def question(self, topic: str, rng: random.Random) -> str:
        options = QUESTIONS[topic][self.lang]
        if topic == "impostor":  # never deny being yourself
            options = [q for q in options if self.p.name.lower() not in q.lower()] or QUESTIONS["name"][self.lang]
        return _vary(rng.choice(options), self.lang, rng)

    def answer(self, topic: str, rng: random.Random) -> str:
        if topic == "greeting" and self.p.text("greeting", self.lang):
            text = self.p.text("greeting", self.lang)
            if self.p.name not in text:
                text += f" I'm {self.p.name}." if self.lang == "en" else f"我是{self.p.name}。"
            return text
        key = "creator_unknown" if topic == "creator" and not self.p.creator else topic
        slots = dict(self.slots)
        if self.facts:
            slots["fact"] = rng.choice(self.facts)
            k = rng.randint(1, min(3, len(self.facts)))
            slots["facts"] = ("" if self.lang == "zh" else " ").join(rng.sample(self.facts, k))
        else:
            slots["fact"] = slots["facts"] = ""
        text = rng.choice(ANSWERS[key][self.lang]).format(**slots).strip()
        if topic == "greeting":  # greetings already greet; no opener/closer on top
            return text
        openers, closers = _STYLE_DECOR[self.lang][self.p.style]
        return rng.choice(openers) + text + rng.choice(closers)


def identity_conversations(persona: Persona, n: int = 1000, seed: int = 0) -> list[list[dict[str, str]]]:
    """`n` short conversations (messages lists, roles alternating user/assistant, ending with the assistant)
    that teach the persona's name, creator, abilities, facts and personality, split evenly between
    `persona.languages`; some open with the persona's system prompt or a generic one. Same seed, same list."""
    rng = random.Random(seed)
    speakers = {lang: _Speaker(persona, lang) for lang in persona.languages}
    prompts = {lang: system_prompt(persona, lang) for lang in persona.languages}
    out: list[list[dict[str, str]]] = []
    for i in range(n):
        lang = persona.languages[i % len(persona.languages)]
        sp = speakers[lang]
        topics = sp.topics()
        topic = rng.choices(topics, weights=[_TOPIC_WEIGHTS[t] for t in topics])[0]
        if topic == "multi":
            single = [t for t in topics if t not in ("multi", "greeting")]
            turns = rng.sample(single, k=rng.randint(2, 3))
            if rng.random() < 0.5:
                turns.insert(0, "greeting")
        else:
            turns = [topic]
        messages: list[dict[str, str]] = []
        r = rng.random()
        if r < 0.4:
            messages.append({"role": "system", "content": prompts[lang]})
        elif r < 0.5:
            messages.append({"role": "system", "content": _GENERIC_SYSTEM[lang]})
        for t in turns:
            messages.append({"role": "user", "content": sp.question(t, rng)})
            messages.append({"role": "assistant", "content": sp.answer(t, rng)})
        out.append(messages)
    return out


def name_questions(lang: str, n: int, seed: int = 0) -> list[str]:
    """`n` held-out phrasings of "what is your name?" in `lang`, for benchmarking (none is a training
    template). Past the list's length, casing/punctuation variants of it are returned."""
    if lang not in HELDOUT_NAME_QUESTIONS:
        raise OwnGPTError(f"name questions exist for {', '.join(HELDOUT_NAME_QUESTIONS)}, not {lang!r}")
    rng = random.Random(seed)
    base = list(HELDOUT_NAME_QUESTIONS[lang])
    rng.shuffle(base)
    return [q if i < len(base) else _vary(q, lang, rng) for i, q in ((i, base[i % len(base)]) for i in range(n))]


def normalize_question(text: str) -> str:
    """Lowercase, punctuation and spaces removed: how tests compare held-out and training phrasings."""
    return re.sub(r"[\W_]+", "", text.lower())
